"""User parameters -> checked inputs: dimensions, conventions and hardware.

Parameters arrive as API keywords (ints, bools, numbers) or CLI ``KEY=VALUE`` text;
both go through the same parsers. Every rejection is one line naming the key, the
value and what is allowed.
"""

from __future__ import annotations

import difflib
import operator
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from fractions import Fraction

import sympy

from shardcost.errors import (
    ImpossibleSplitError,
    InputError,
    InvalidValueError,
    UnknownNameError,
)
from shardcost.symbolic import Cost, Derivation, Product
from shardcost.symbolic.dimensions import (
    BATCH_SIZE,
    BY_SYMBOL,
    DIMENSIONS,
    PAST_SEQ_LEN,
)
from shardcost.symbolic.dimensions import (
    BY_NAME as DIMENSIONS_BY_NAME,
)
from shardcost.symbolic.numbers import substitution

from .conventions import BY_NAME as CONVENTIONS_BY_NAME
from .conventions import TIMING_CONVENTIONS, Conventions, Phase, phase
from .dtypes import compute_bytes
from .hardware import (
    FIELDS_BY_NAME as HARDWARE_BY_NAME,
)
from .hardware import REQUIRED, Hardware, build, kernel_class
from .hardware import (
    hardware as catalog_hardware,
)
from .registry import Layout, get_layout, relations_for

KEYS: tuple[str, ...] = (*DIMENSIONS_BY_NAME, *CONVENTIONS_BY_NAME, *HARDWARE_BY_NAME)
# Parallel degrees: a layout that does not shard over one takes it at 1 (one dictionary of
# settings fits every layout), and refuses it above 1.
PARALLEL_DEGREES = frozenset({"tensor_parallel", "context_parallel", "expert_parallel"})
# Each dimension that takes another's value when not given, as the notation declares it.
DEFAULT_FROM: dict[str, str] = {d.name: d.default_from for d in DIMENSIONS if d.default_from}
_INTEGER = re.compile(r"[+]?[0-9]+(_[0-9]+)*")
_HINTS = {
    (Phase.DECODE, "seq_len"): "decode reads past_seq_len (and new_tokens) instead",
    (Phase.PREFILL, "past_seq_len"): "prefill reads seq_len instead",
    (Phase.PREFILL, "new_tokens"): "prefill reads seq_len instead",
}


def _hint(layout: Layout, ph: Phase, key: str) -> str:
    """Why ``key`` is not read here, when there is more to say than that."""
    if (ph, key) in _HINTS:
        return f" ({_HINTS[ph, key]})"
    for name in layout.conventions_for(ph):
        convention = CONVENTIONS_BY_NAME[name]
        for value in convention.choices:
            if value == convention.default:
                continue
            cost = layout.cost(ph, Conventions(**{name: value}))
            if any(BY_SYMBOL[s].name == key for s in cost.dimensions if s in BY_SYMBOL):
                shown = str(value).lower()
                return f" (it is read with {name}={shown})"
    return ""


def unknown_key(key: str) -> UnknownNameError:
    """The error for a key that is neither a dimension, a convention nor a hardware field."""
    close = difflib.get_close_matches(key, KEYS, n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    return UnknownNameError(f"unknown key {key!r}{hint}; keys: {', '.join(KEYS)}")


MAX_COUNT = 10**24  # far past any model (10^13 tokens, 10^13 parameters); digits bounded
MAX_REQUESTS = 1_000_000  # requests in one ragged batch


def parse_count(key: str, raw: object) -> int:
    """A positive integer from an int or decimal text, at most MAX_COUNT;
    InvalidValueError otherwise."""
    if isinstance(raw, bool):
        value = None
    elif isinstance(raw, str):
        text = raw.strip()
        if len(text) > 40:  # before int(): Python refuses 4,300 digits, and it takes time
            raise InvalidValueError(
                f"{key} is given {len(text):,} characters; {key} takes a positive integer of "
                "at most 10^24"
            )
        value = int(text) if _INTEGER.fullmatch(text) else None
        if value is None and re.fullmatch(r"-[0-9]+", text):
            value = int(text)
    else:
        try:
            value = operator.index(raw)  # int, numpy integers
        except TypeError:
            value = None
    if value is None:
        raise InvalidValueError(
            f"{key}={raw!r} is not a whole number; {key} takes a positive integer"
        )
    if value <= 0:
        raise InvalidValueError(f"{key}={value} is not allowed; {key} takes a positive integer")
    if value > MAX_COUNT:
        raise InvalidValueError(
            f"{key}={value:.3e} is larger than any model's; {key} takes a positive integer of "
            "at most 10^24"
        )
    return value


def describe(expr: sympy.Expr, derivation: Derivation) -> str:
    """A name a user recognises for a quantity in an error or note."""
    if expr in BY_SYMBOL:
        return BY_SYMBOL[expr].name
    for step in derivation.steps:
        if step.symbol == expr:
            return f"{step.label} ({step.symbol})"
    named = {s: sympy.Symbol(BY_SYMBOL[s].name) for s in expr.free_symbols if s in BY_SYMBOL}
    return str(expr.xreplace(named))


def _divisors(n: int, limit: int = 12) -> str:
    found = [k for k in range(1, n + 1) if n % k == 0] if n <= 10**6 else []
    if not found or len(found) > limit:
        return f"a divisor of {n}"
    return ", ".join(map(str, found))


def _related(
    layout: Layout, used: set[str], given: Mapping[str, int], *, decoupled: bool = False
) -> dict[str, int]:
    """The dimensions tied by the layer's relations (those the layout reads all of), each
    completed from what is given: any two of ``total = left × right`` give the third.

    ``decoupled``: all three given need not agree (a model whose config sets head_dim
    apart from hidden_size / num_heads); the relation still derives what is missing.
    """
    symbols = {DIMENSIONS_BY_NAME[name].symbol for name in used}
    values: dict[str, int] = {}
    for relation in relations_for(layout, symbols):
        known = {dim.name: values.get(dim.name, given.get(dim.name)) for dim in relation.dimensions}
        values |= _complete(relation, known, check=not decoupled)
    return values


def _complete(relation: Product, known: dict[str, int | None], *, check: bool) -> dict[str, int]:
    """``relation.complete(known)``; all three given are kept as they are, or with
    ``check``, refused when they disagree, saying what must equal what."""
    total, left, right = (known[dim.name] for dim in relation.dimensions)
    if total is None or left is None or right is None:
        return relation.complete(known)
    name, a, b = (dim.name for dim in relation.dimensions)
    if check and total != left * right:
        raise ImpossibleSplitError(
            f"{name}={total} but {a} × {b} = {left} × {right} = {left * right}; "
            f"{name} must equal {a} × {b} (give any two to derive the third)"
        )
    return {name: total, a: left, b: right}


@dataclass(frozen=True)
class Inputs:
    """Checked inputs of one evaluation: layout, phase, conventions, dimensions, hardware."""

    layout: Layout
    phase: Phase
    conventions: Conventions
    dims: Mapping[str, int | tuple[int, ...]]  # by name, in notation order; a ragged
    # decode batch gives past_seq_len as one length per request
    hardware: Hardware | None

    @property
    def cost(self) -> Cost:
        """The symbolic cost these inputs evaluate."""
        return self.layout.cost(self.phase, self.conventions)

    @property
    def applicable(self) -> tuple[str, ...]:
        """The conventions in force: the layout's in this phase, and the timing ones when
        timed (hardware given)."""
        return self.layout.conventions_for(self.phase, timed=self.hardware is not None)

    @property
    def ragged(self) -> tuple[int, ...] | None:
        """The past length of each request, for a ragged decode batch."""
        value = self.dims.get(PAST_SEQ_LEN.name)
        return value if isinstance(value, tuple) else None

    def substitution(self) -> dict[sympy.Symbol, sympy.Expr]:
        """Every dimension (and hardware field) as an exact SymPy number; a ragged batch's
        lengths are left out (see ragged.evaluate)."""
        values: dict[sympy.Symbol, int | Fraction] = {
            DIMENSIONS_BY_NAME[name].symbol: value
            for name, value in self.dims.items()
            if not isinstance(value, tuple)
        }
        if self.hardware is not None:
            b = self.dims.get("bytes_per_elem", 2)
            values |= self.hardware.values(compute_bytes(self.conventions, b))  # type: ignore[arg-type]
        return substitution(values)

    def params(self) -> dict[str, object]:
        """The parameters in force, keyed as the CLI and API take them (JSON-ready)."""
        out: dict[str, object] = {
            k: list(v) if isinstance(v, tuple) else v for k, v in self.dims.items()
        }
        out |= {k: v for k, v in self.conventions.as_dict().items() if k in self.applicable}
        if self.hardware is not None:
            for name, value in self.hardware.fields().items():
                if value is not None:
                    out[name] = _json_number(value) if isinstance(value, Fraction) else value
        return out


def _json_number(value: Fraction) -> int | float:
    return int(value) if value.denominator == 1 else float(value)


def check_keys(params: Mapping[str, object]) -> None:
    """UnknownNameError for the first key that is not a dimension, convention or hardware field."""
    for key in params:
        if (
            key not in DIMENSIONS_BY_NAME
            and key not in CONVENTIONS_BY_NAME
            and key not in HARDWARE_BY_NAME
        ):
            raise unknown_key(key)


def applicable_params(layout: Layout, ph: Phase, params: Mapping[str, object]) -> dict[str, object]:
    """The subset of ``params`` that ``layout`` reads in ``ph`` (hardware fields and timing
    conventions always: every layout reads them when timed)."""
    conventions = set(layout.conventions_for(ph))
    chosen = choose_conventions(layout, ph, {k: v for k, v in params.items() if k in conventions})
    used = {BY_SYMBOL[s].name for s in layout.cost(ph, chosen).dimensions if s in BY_SYMBOL}
    always = {*HARDWARE_BY_NAME, *TIMING_CONVENTIONS}
    return {k: v for k, v in params.items() if k in conventions or k in used or k in always}


def resolve_inputs(
    layout: str,
    phase_name: str = "prefill",
    *,
    layer: str = "attention",
    hardware: str | None = None,
    params: Mapping[str, object] | None = None,
    decoupled_heads: bool = False,
) -> Inputs:
    """Check and complete user parameters for one layout and phase.

    ``decoupled_heads`` lets all three values given for a relation of the layer disagree
    (a model's config may set head_dim apart from hidden_size / num_heads, and the layer's
    formulas are written for it); what is missing is still derived. The layer commands
    keep the relations.
    """
    params = dict(params or {})
    chosen = get_layout(layout, layer)
    ph = phase(phase_name)
    check_keys(params)

    hw = _hardware(hardware, params)
    if hw is not None:  # the layer's kernel class's fitted figures folded in
        hw = hw.for_class(kernel_class(chosen.layer))
    conventions = choose_conventions(chosen, ph, params, timed=hw is not None)
    cost = chosen.cost(ph, conventions)
    dims = _dimensions(chosen, ph, cost, params, decoupled_heads)
    _check_requirements(cost, dims)
    return Inputs(chosen, ph, conventions, dims, hw)


def choose_conventions(
    layout: Layout, ph: Phase, params: Mapping[str, object], *, timed: bool = False
) -> Conventions:
    """The conventions named in ``params`` (other keys are skipped), checked to apply;
    ``timed``: the timing conventions apply too."""
    applicable = layout.conventions_for(ph, timed=timed)
    chosen: dict[str, bool | str] = {}
    for key, raw in params.items():
        if key not in CONVENTIONS_BY_NAME:
            continue
        if key in TIMING_CONVENTIONS and not timed:
            raise InputError(
                f"{key} is a timing convention: it applies only with hardware (--hardware "
                "NAME, or its fields as KEY=VALUE)"
            )
        if key not in applicable:
            where = ", ".join(applicable) or "none"
            raise InputError(
                f"{key} does not apply to {layout.layer} layout {layout.name!r} in {ph}; "
                f"conventions that do: {where}"
            )
        chosen[key] = CONVENTIONS_BY_NAME[key].parse(raw)
    return Conventions(**chosen)


def _dimensions(
    layout: Layout,
    ph: Phase,
    cost: Cost,
    params: Mapping[str, object],
    decoupled_heads: bool = False,
) -> dict[str, int | tuple[int, ...]]:
    used = {BY_SYMBOL[s].name for s in cost.dimensions if s in BY_SYMBOL}
    given: dict[str, int] = {}
    for key, raw in params.items():
        if key not in DIMENSIONS_BY_NAME:
            continue
        if key not in used:
            if idle_degree(key, raw):
                continue  # one rank of a dimension a layout does not shard: what it does
            hint = _hint(layout, ph, key)
            names = ", ".join(d.name for d in DIMENSIONS if d.name in used)
            raise InputError(
                f"{key} is not a parameter of {layout.layer} layout {layout.name!r} in {ph}"
                f"{hint}; its parameters: {names}"
            )
        if key == PAST_SEQ_LEN.name and _many(raw):
            continue  # one length per request: below
        given[key] = parse_count(key, raw)
    lengths = request_lengths(params)
    if lengths is not None:
        batch = given.setdefault(BATCH_SIZE.name, len(lengths))
        if batch != len(lengths):
            raise InputError(
                f"batch_size={batch} but past_seq_len gives {len(lengths)} lengths; a ragged "
                "batch has one past length per request (leave batch_size out to count them)"
            )

    values: dict[str, int | tuple[int, ...]] = dict(given)
    values |= _related(layout, used, given, decoupled=decoupled_heads)
    for dim in DIMENSIONS:
        if dim.name not in values:
            values[dim.name] = given.get(dim.name, dim.default)
    for name, source in DEFAULT_FROM.items():
        if name in used and name not in given:
            values[name] = values[source]
    if lengths is not None:
        values[PAST_SEQ_LEN.name] = lengths
    return {dim.name: values[dim.name] for dim in DIMENSIONS if dim.name in used}


def idle_degree(key: str, raw: object) -> bool:
    """Whether ``key=raw`` is a parallel degree of 1: what a layout that does not shard
    over that dimension is, so it accepts it (and ignores it)."""
    if key not in PARALLEL_DEGREES:
        return False
    try:
        return parse_count(key, raw) == 1
    except InputError:
        return False


def _many(raw: object) -> bool:
    """Several values: a list or tuple, or text with commas."""
    return isinstance(raw, (list, tuple)) or (isinstance(raw, str) and "," in raw)


def request_lengths(params: Mapping[str, object]) -> tuple[int, ...] | None:
    """A ragged batch's past lengths, one per request, each a positive integer; None when
    ``past_seq_len`` is absent or one length."""
    raw = params.get(PAST_SEQ_LEN.name)
    if raw is None or not _many(raw):
        return None
    if isinstance(raw, str) and raw.count(",") >= MAX_REQUESTS:
        raise InvalidValueError(f"past_seq_len gives more than {MAX_REQUESTS:,} requests")
    items = raw.split(",") if isinstance(raw, str) else list(raw)  # type: ignore[union-attr]
    if len(items) > MAX_REQUESTS:
        raise InvalidValueError(
            f"past_seq_len gives {len(items):,} requests; a ragged batch has at most "
            f"{MAX_REQUESTS:,}"
        )
    if not items:
        raise InvalidValueError("past_seq_len=[] is empty; give one past length per request")
    return tuple(parse_count(PAST_SEQ_LEN.name, item) for item in items)


def _check_requirements(cost: Cost, dims: Mapping[str, object]) -> None:
    fixed = {
        DIMENSIONS_BY_NAME[name].symbol: value
        for name, value in dims.items()
        if not isinstance(value, tuple)
    }
    derivation = cost.derivation
    checks = [
        (req, derivation.resolve(req.total), derivation.resolve(req.parts))
        for req in derivation.requirements
    ]
    # the requirements a ragged batch checks for every distinct length, the others once
    per_length = [c for c in checks if PAST_SEQ_LEN.symbol in c[1].free_symbols | c[2].free_symbols]
    lengths = dims.get(PAST_SEQ_LEN.name)
    cases = [(fixed, checks)]
    if isinstance(lengths, tuple):  # a ragged batch: every request's length must split
        distinct = list(dict.fromkeys(lengths))
        cases = [(fixed | {PAST_SEQ_LEN.symbol: distinct[0]}, checks)]
        if per_length:
            cases += [(fixed | {PAST_SEQ_LEN.symbol: n}, per_length) for n in distinct[1:]]
    for subs, required in cases:
        for req, total_expr, parts_expr in required:
            total = int(total_expr.xreplace(subs))
            parts = int(parts_expr.xreplace(subs))
            if req.holds(total, parts):
                continue
            total_name = describe(req.total, derivation)
            parts_name = describe(req.parts, derivation)
            if req.either:
                raise ImpossibleSplitError(
                    f"{total_name}={total} and {parts_name}={parts} do not divide one "
                    f"another: {req.why}"
                )
            raise ImpossibleSplitError(
                f"{total_name}={total} is not divisible by {parts_name}={parts}: {req.why}; "
                f"allowed {parts_name}: {_divisors(total)}"
            )


def _hardware(name: str | None, params: Mapping[str, object]) -> Hardware | None:
    """The catalog (or file) hardware named, with any fields given overriding it."""
    overrides = {k: v for k, v in params.items() if k in HARDWARE_BY_NAME}
    if name is not None and not isinstance(name, str):
        raise InputError(
            f"hardware is a catalog name or a FILE.toml path, not {type(name).__name__}"
        )
    if name is None and not overrides:
        return None
    if name is None:
        missing = [k for k in REQUIRED if k not in overrides]
        if missing:
            raise InputError(
                f"timing needs {', '.join(missing)} as well (or a catalog entry: --hardware NAME); "
                "given: " + ", ".join(overrides)
            )
        return build("custom", overrides)
    base = catalog_hardware(name)
    if not overrides:
        return base
    merged: dict[str, object] = {k: v for k, v in base.fields().items() if v is not None}
    if "peak_tflops" in overrides and "peak_tflops_fp8" not in overrides:
        merged.pop("peak_tflops_fp8", None)  # a new peak replaces the catalog's FP8 figure too
    for given, other in (
        ("memory_capacity_gb", "memory_capacity_gib"),
        ("memory_capacity_gib", "memory_capacity_gb"),
    ):
        if given in overrides:
            merged.pop(other, None)  # a capacity given replaces the catalog's, in either unit
    merged |= overrides
    changed = build(f"{base.name} (modified)", merged)
    return replace(changed, description=base.description, source=base.source)
