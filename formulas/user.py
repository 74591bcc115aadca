"""Layouts users write: from a TOML file or from Python, parsed safely, registered like
built-ins (so ``verify``, ``metrics`` and ``report`` all work on them).

    [layout]
    name = "my-ring-cp"
    layer = "attention"
    phase = "prefill"
    chips = "context_parallel"
    reference = "single"          # the layout whose totals this one must conserve
    summary = "..."               # optional

    [per_chip]                    # all four required
    flops = "..."
    weight_bytes = "..."
    activation_bytes = "..."
    kv_cache_bytes = "..."

    [comm]                        # optional: collective name = payload bytes per chip
    softmax_stats_allreduce = "..."

    [groups]                      # optional: a collective's group size (default: chips);
    softmax_stats_allreduce = "context_parallel"    # nothing is sent on a group of one

    [checks]                      # optional
    weight_replication = "context_parallel"   # weight copies; undeclared: verify states it
    kv_replication = "1"                      # KV copies (default 1: unique KV conserved)
    flops_redundancy = "0"                    # FLOPs repeated beyond the reference's

Formulas use the notation's names (``seq_len`` or ``S`` ...), numbers, + - * / **,
parentheses and ceil, floor, max, min. Nothing in the file is ever executed.

A layout that cannot be is refused before it is registered: chips or a group that is
not a whole number of at least 1 at some valid point (0, -1, 1/2, S/2), or a per-chip
quantity or a collective's payload below zero at some point (-S, S - 2*B). These are
verify's "whole chips" and "non-negative" claims, decided the same way; ``read_layout``
builds a file's layout without refusing or registering it, for verify to report on.
"""

from __future__ import annotations

import re
import tomllib
import unicodedata
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import sympy

from shardcost.errors import InputError
from shardcost.files import read_text
from shardcost.symbolic import (
    PER_CHIP,
    Collective,
    CollectiveKind,
    Cost,
    Section,
    Trace,
    finish,
    over_group,
)
from shardcost.symbolic.dimensions import BY_NAME, BY_SHORT, BY_SYMBOL, DIMENSIONS
from shardcost.symbolic.parse import ExpressionError, check_expression, parse_formula
from shardcost.symbolic.verify import Verdict

from .conventions import Conventions, Phase
from .conventions import phase as parse_phase
from .invariants import refutation
from .registry import (
    REF_FLOPS,
    REF_KV,
    REF_WEIGHTS,
    Builder,
    Checks,
    Layout,
    check_layer,
    forget,
    get_layout,
    register,
)
from .steps import ACTIVATION_BYTES, FLOPS, KV_CACHE_BYTES, WEIGHT_BYTES

MAX_FILE_BYTES = 64 * 1024
MAX_COLLECTIVES = 32  # a layout performs a handful; hundreds made compile recurse too deep
NAMES: dict[str, sympy.Symbol] = {
    **{name: dim.symbol for name, dim in BY_NAME.items()},
    **{short: dim.symbol for short, dim in BY_SHORT.items()},
}
PER_CHIP_KEYS = ("flops", "weight_bytes", "activation_bytes", "kv_cache_bytes")
_SECTIONS = {
    "layout": ("name", "layer", "phase", "chips", "reference", "summary"),
    "per_chip": PER_CHIP_KEYS,
    "comm": None,  # any collective names
    "groups": None,
    "checks": ("weight_replication", "kv_replication", "flops_redundancy"),
}
_IDENTIFIER = re.compile(r"[a-z][a-z0-9_-]{0,63}")
MAX_SUMMARY = 200
# Unicode categories a one-line summary (or a path shown in a message) may not carry
_UNPRINTABLE = {
    "Cc": "a control character",
    "Cf": "a format character",
    "Zl": "a line separator",
    "Zp": "a paragraph separator",
    "Cs": "a surrogate",
    "Co": "a private-use character",
    "Cn": "an unassigned code point",
}
_PER_CHIP_KEY = dict(zip(PER_CHIP, PER_CHIP_KEYS, strict=True))  # flops_per_chip -> flops
_TOTALS = dict(
    zip(PER_CHIP_KEYS, (FLOPS, WEIGHT_BYTES, ACTIVATION_BYTES, KV_CACHE_BYTES), strict=True)
)
_PAYLOAD_NOTE = "payload bytes; none on a one-chip group"
_MAX_SHOWN = 60  # characters of a formula quoted in a message

Formula = str | int | sympy.Expr


def _formula(value: Formula, where: str) -> sympy.Expr:
    expr = _parsed(value, where)
    for power in expr.atoms(sympy.Pow):
        if power.exp.is_negative and power.base.is_positive is not True:
            raise InputError(
                f"{where}: divides by {power.base}, which is not positive at every valid "
                "point; a formula divides only by dimensions and their products"
            )
    return expr


def _parsed(value: Formula, where: str) -> sympy.Expr:
    if isinstance(value, sympy.Basic):
        unknown = [s for s in value.free_symbols if s not in BY_SYMBOL]
        if unknown:
            raise InputError(f"{where}: {unknown[0]} is not a dimension symbol")
        try:  # the parser's limits, before SymPy evaluates anything of it
            return check_expression(value, NAMES)
        except ExpressionError as exc:
            raise InputError(f"{where}: {exc.reason}") from None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise InputError(f"{where}: expected formula text, got {type(value).__name__}")
    if isinstance(value, int):
        if value.bit_length() > 333:  # about 100 digits, the parser's bound on a constant
            raise InputError(f"{where}: constant too large (over 100 digits)")
        return sympy.Integer(value)
    try:
        return parse_formula(value, NAMES)
    except ExpressionError as exc:
        raise InputError(f"{where}, {exc}") from None


def define_layout(
    name: str,
    *,
    phase: str,
    chips: Formula,
    per_chip: Mapping[str, Formula],
    comm: Mapping[str, Formula] | None = None,
    groups: Mapping[str, Formula] | None = None,
    layer: str = "attention",
    reference: str = "single",
    weight_replication: Formula | None = None,
    kv_replication: Formula = 1,
    flops_redundancy: Formula | None = None,
    summary: str = "",
    where: str = "",
) -> Layout:
    """Build a layout from formulas (text is parsed safely), register it and return it.

    InputError, and nothing registered, when a formula is not allowed or the layout cannot
    be: chips or a group not a whole number of at least 1, or a per-chip quantity or a
    payload below zero, at some valid point.
    """
    entry, cost = _build(
        name,
        phase=phase,
        chips=chips,
        per_chip=per_chip,
        comm=comm,
        groups=groups,
        layer=layer,
        reference=reference,
        weight_replication=weight_replication,
        kv_replication=kv_replication,
        flops_redundancy=flops_redundancy,
        summary=summary,
        where=where,
    )
    ref_cost = get_layout(reference, layer).cost(entry.phases[0])
    degrees = frozenset(dim.symbol for dim in entry.degrees)
    verdict = refutation(cost, ref_cost, degrees, layer=entry.layer)
    if verdict is not None:
        raise InputError(_impossible(verdict, chips, per_chip, comm or {}, groups or {}, where))
    return register(entry)


def _build(
    name: str,
    *,
    phase: str,
    chips: Formula,
    per_chip: Mapping[str, Formula],
    comm: Mapping[str, Formula] | None,
    groups: Mapping[str, Formula] | None,
    layer: str,
    reference: str,
    weight_replication: Formula | None,
    kv_replication: Formula,
    flops_redundancy: Formula | None,
    summary: str,
    where: str,
) -> tuple[Layout, Cost]:
    """The layout (not registered) and its cost; InputError when a formula is not allowed."""
    at = f"{_printable(where)}: " if where else ""
    ph = _head(name, layer, phase, reference, at)
    exprs = _per_chip(per_chip, at)
    chips_expr = _formula(chips, f"{at}[layout] chips")
    payloads, group_of = _collectives(comm or {}, groups or {}, chips_expr, at)
    degrees = tuple(BY_SYMBOL[s] for s in sorted(chips_expr.free_symbols, key=str))
    checks = _checks(reference, weight_replication, kv_replication, flops_redundancy, at)
    build = _builder(exprs, chips_expr, payloads, group_of)
    summary = _summary(summary, where, at)
    entry = Layout(name, layer, summary, degrees, (), build, checks, (ph,))
    cost = build(ph, Conventions())  # fail now, not at first use, if the formulas do not combine
    return entry, cost


def _head(name: str, layer: str, phase: str, reference: str, at: str) -> Phase:
    """The [layout] table checked: a name, a layer, a phase and a reference that exist."""
    if not isinstance(name, str) or not _IDENTIFIER.fullmatch(name):
        raise InputError(f"{at}[layout] name={name!r}: use lowercase letters, digits, - and _")
    try:
        check_layer(layer)
        ph = parse_phase(phase)
        get_layout(reference, layer)  # the reference must exist
    except InputError as exc:
        raise InputError(f"{at}[layout] {exc}") from None
    return ph


def _per_chip(per_chip: Mapping[str, Formula], at: str) -> dict[str, sympy.Expr]:
    """The four per-chip formulas, exactly those, parsed."""
    if not isinstance(per_chip, Mapping):
        raise InputError(f"{at}[per_chip] is a table of quantity = formula")
    missing = [k for k in PER_CHIP_KEYS if k not in per_chip]
    extra = [k for k in per_chip if k not in PER_CHIP_KEYS]
    if missing or extra:
        raise InputError(
            f"{at}[per_chip] needs exactly {', '.join(PER_CHIP_KEYS)}"
            + (f"; missing {', '.join(missing)}" if missing else "")
            + (f"; unknown {', '.join(_printable(str(k)) for k in extra)}" if extra else "")
        )
    return {k: _formula(per_chip[k], f"{at}[per_chip] {k}") for k in PER_CHIP_KEYS}


def _collectives(
    comm: Mapping[str, Formula], groups: Mapping[str, Formula], chips: sympy.Expr, at: str
) -> tuple[dict[str, sympy.Expr], dict[str, sympy.Expr]]:
    """Each collective's payload and group (default: every chip), parsed."""
    if not isinstance(comm, Mapping) or not isinstance(groups, Mapping):
        raise InputError(f"{at}[comm] and [groups] are tables of name = formula")
    if len(comm) > MAX_COLLECTIVES:
        raise InputError(
            f"{at}[comm] has {len(comm):,} collectives; a layout has at most {MAX_COLLECTIVES}"
        )
    for key in comm:
        if not isinstance(key, str) or not _IDENTIFIER.fullmatch(key):
            raise InputError(f"{at}[comm] {key!r}: use lowercase letters, digits, - and _")
    stray = [k for k in groups if k not in comm]
    if stray:
        raise InputError(f"{at}[groups] {_printable(str(stray[0]))} is not a collective in [comm]")
    payloads = {k: _formula(v, f"{at}[comm] {k}") for k, v in comm.items()}
    group_of = {k: _formula(groups[k], f"{at}[groups] {k}") if k in groups else chips for k in comm}
    return payloads, group_of


def _checks(
    reference: str,
    weight_replication: Formula | None,
    kv_replication: Formula,
    flops_redundancy: Formula | None,
    at: str,
) -> Checks:
    """What verify holds the layout to: the reference's totals, with the copies declared."""
    excess = sympy.S.Zero
    if flops_redundancy is not None:
        excess = _formula(flops_redundancy, f"{at}[checks] flops_redundancy")
    copies = None
    if weight_replication is not None:
        copies = _formula(weight_replication, f"{at}[checks] weight_replication")
    return Checks(
        reference=reference,
        flops=REF_FLOPS + excess,
        repeated="declared by the layout",
        weights=None if copies is None else REF_WEIGHTS * copies,
        kv_cache=REF_KV * _formula(kv_replication, f"{at}[checks] kv_replication"),
    )


def _builder(
    exprs: Mapping[str, sympy.Expr],
    chips: sympy.Expr,
    payloads: Mapping[str, sympy.Expr],
    groups: Mapping[str, sympy.Expr],
) -> Builder:
    """The layout's builder: the per-chip formulas as totals, each payload as a collective."""

    def build(_phase: Phase, _conventions: Conventions) -> Cost:
        t = Trace()
        totals = {key: spec(t, exprs[key]) for key, spec in _TOTALS.items()}
        collectives = [_collective(t, key, payloads[key], groups[key]) for key in payloads]
        return finish(
            t,
            chips=chips,
            flops=totals["flops"],
            weights=totals["weight_bytes"],
            activations=totals["activation_bytes"],
            kv_cache=totals["kv_cache_bytes"],
            collectives=collectives,
            note="",  # a user layout's payloads are whatever its file declares
        )

    return build


def _collective(t: Trace, key: str, payload: sympy.Expr, group: sympy.Expr) -> Collective:
    """A collective the file names, of no declared kind: its payload as a step of ``t``."""
    symbol = t.define(
        key,
        key.replace("_", " "),
        over_group(payload, group),
        section=Section.COMMUNICATION,
        unit="bytes",
        name=f"C_{key}",
        note=_PAYLOAD_NOTE,
    )
    return Collective(key, CollectiveKind.USER, group, symbol, "")


def _summary(summary: object, where: str, at: str) -> str:
    """The layout's one-line summary: ``summary`` checked, or one naming ``where``."""
    if not isinstance(summary, str):
        raise InputError(f"{at}[layout] summary must be text, got {type(summary).__name__}")
    if len(summary) > MAX_SUMMARY:
        raise InputError(
            f"{at}[layout] summary is {len(summary):,} characters; at most {MAX_SUMMARY}"
        )
    for i, ch in enumerate(summary, 1):
        category = unicodedata.category(ch)
        if category in _UNPRINTABLE:
            raise InputError(
                f"{at}[layout] summary must be one line of printable text; character {i} "
                f"is U+{ord(ch):04X}, {_UNPRINTABLE[category]}"
            )
    if summary:
        return summary
    source = _printable(where) if where else "Python"
    room = MAX_SUMMARY - len("user layout ()")
    if len(source) > room:
        source = "…" + source[-(room - 1) :]  # the end of a long path names the file
    return f"user layout ({source})"


def _printable(text: str) -> str:
    """``text`` with every character that is not printable on one line escaped (``\\n``,
    ``\\u2028`` ...): a path or key in a message cannot break it across lines."""
    return "".join(
        ascii(ch)[1:-1] if unicodedata.category(ch) in _UNPRINTABLE else ch for ch in text
    )


def _impossible(
    verdict: Verdict,
    chips: Formula,
    per_chip: Mapping[str, Formula],
    comm: Mapping[str, Formula],
    groups: Mapping[str, Formula],
    where: str,
) -> str:
    """One line for a refuted layout: the table, key and value, why, and where it fails."""
    label = verdict.term
    key, _, kind = label.rpartition(" ")
    if label == "chips" or (kind == "group" and key not in groups):
        item, value, why = "[layout] chips", chips, "the chip count is a whole number, at least 1"
    elif kind == "group":
        item, value, why = (
            f"[groups] {key}",
            groups[key],
            "a group is a whole number of chips, at least 1",
        )
    elif kind == "payload":
        item, value, why = f"[comm] {key}", comm[key], "a payload is bytes sent, zero or more"
    elif label.endswith("_per_chip") and label.removesuffix("_per_chip") in _PER_CHIP_KEY:
        name = _PER_CHIP_KEY[label.removesuffix("_per_chip")]
        item, value, why = (
            f"[per_chip] {name}",
            per_chip[name],
            "a per-chip quantity is zero or more",
        )
    else:  # the payloads' sum: one of them is below zero
        item, value, why = "[comm]", None, "the bytes sent add up to zero or more"
    at = f"{_printable(where)}: " if where else ""
    shown = f"{item} = {_shown(value)}" if value is not None else item
    point = verdict.counterexample
    found = verdict.sides[0] if verdict.sides is not None else None
    if found is None:
        return f"{at}{shown}: {why}; it is not at some valid point"
    if not point:
        return f"{at}{shown}: {why}; {found} is not"
    names = " ".join(f"{dim.name}={point[dim.symbol]}" for dim in DIMENSIONS if dim.symbol in point)
    return f"{at}{shown}: {why}; at {names} it is {found}"


def _shown(value: Formula) -> str:
    """A formula as given, on one line and at most _MAX_SHOWN characters."""
    text = " ".join(value.split()) if isinstance(value, str) else str(value)
    return text if len(text) <= _MAX_SHOWN else text[: _MAX_SHOWN - 1] + "…"


def load_layout(path: str | Path) -> Layout:
    """Read, check and register the layout in a TOML file (InputError, and nothing
    registered, when the file is not a layout that can be; see ``define_layout``)."""
    return define_layout(**_read(_path(path)))


def reload_layout(path: str | Path) -> Layout:
    """``load_layout``, replacing a user layout of the same name and layer loaded before
    in this process (the command line loads its files on every call); a built-in layout
    is never replaced."""
    entry = read_layout(path)
    registered = _registered(entry.layer, entry.name)
    if registered is not None and registered.build.__module__ == __name__:
        forget(entry.layer, entry.name)
    return load_layout(path)


def _registered(layer: str, name: str) -> Layout | None:
    try:
        return get_layout(name, layer)
    except InputError:
        return None


def _path(path: object) -> Path:
    if not isinstance(path, (str, Path)):
        raise InputError(f"a layout file is a path, not {type(path).__name__}")
    return Path(path)


def read_layout(path: str | Path) -> Layout:
    """The layout in a TOML file, built but neither registered nor refused when it cannot
    be (chips or a group not whole, a payload below zero): for verify, which reports each
    claim it fails with a counterexample. InputError when the file or a formula is bad."""
    return _build(**_read(_path(path)))[0]


def _read(path: Path) -> dict[str, Any]:
    """``define_layout``'s arguments from the TOML file at ``path``."""
    shown = _printable(str(path))
    data = _toml(path, shown)
    _check_tables(data, shown)
    head = data["layout"]
    checks = data.get("checks", {})
    return {
        "name": head["name"],
        "phase": head["phase"],
        "chips": head["chips"],
        "per_chip": data["per_chip"],
        "comm": data.get("comm"),
        "groups": data.get("groups"),
        "layer": head.get("layer", "attention"),
        "reference": head.get("reference", "single"),
        "weight_replication": checks.get("weight_replication"),
        "kv_replication": checks.get("kv_replication", 1),
        "flops_redundancy": checks.get("flops_redundancy"),
        "summary": head.get("summary", ""),
        "where": str(path),
    }


def _toml(path: Path, shown: str) -> dict[str, Any]:
    """The file's TOML, at most MAX_FILE_BYTES; InputError saying why it cannot be read."""
    text = read_text(path, "a layout file", MAX_FILE_BYTES)
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{shown}: malformed TOML: {exc}") from None
    except RecursionError:
        raise InputError(f"{shown}: nested too deeply to be a layout file") from None


def _check_tables(data: Mapping[str, Any], shown: str) -> None:
    """Known tables and keys only; [layout] with a name, phase and chips, and [per_chip]."""
    for section, value in data.items():
        name = _printable(section)
        if section not in _SECTIONS:
            raise InputError(f"{shown}: unknown table [{name}]; tables: {', '.join(_SECTIONS)}")
        if not isinstance(value, dict):
            raise InputError(f"{shown}: {name} must be a table, [{name}]")
        allowed = _SECTIONS[section]
        for key in value:
            if allowed is not None and key not in allowed:
                raise InputError(
                    f"{shown}: unknown key [{name}] {_printable(key)}; keys: {', '.join(allowed)}"
                )
    head = data.get("layout")
    if head is None or "per_chip" not in data:
        raise InputError(f"{shown}: a layout file needs [layout] and [per_chip] tables")
    for key in ("name", "phase", "chips"):
        if key not in head:
            raise InputError(f"{shown}: [layout] needs {key}")
    for key in ("name", "layer", "phase", "reference", "summary"):
        if key in head and not isinstance(head[key], str):
            raise InputError(f"{shown}: [layout] {key} must be text")
