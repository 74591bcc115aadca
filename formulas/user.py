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
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from pathlib import Path

import sympy

from shardcost.errors import InputError
from shardcost.symbolic import Collective, Cost, Trace, finish, over_group
from shardcost.symbolic.dimensions import BY_NAME, BY_SHORT, BY_SYMBOL
from shardcost.symbolic.parse import ExpressionError, parse_formula

from .conventions import Conventions, Phase
from .conventions import phase as parse_phase
from .layouts import (
    REF_FLOPS,
    REF_KV,
    REF_WEIGHTS,
    Checks,
    Layout,
    check_layer,
    get_layout,
    register,
)

MAX_FILE_BYTES = 64 * 1024
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

Formula = str | int | sympy.Expr


def _formula(value: Formula, where: str) -> sympy.Expr:
    if isinstance(value, sympy.Expr):
        unknown = [s for s in value.free_symbols if s not in BY_SYMBOL]
        if unknown:
            raise InputError(f"{where}: {unknown[0]} is not a dimension symbol")
        return value
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise InputError(f"{where}: expected formula text, got {type(value).__name__}")
    if isinstance(value, int):
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
    """Build a layout from formulas (text is parsed safely), register it and return it."""
    at = f"{where}: " if where else ""
    if not isinstance(name, str) or not _IDENTIFIER.fullmatch(name):
        raise InputError(f"{at}[layout] name={name!r}: use lowercase letters, digits, - and _")
    try:
        check_layer(layer)
        ph = parse_phase(phase)
        get_layout(reference, layer)  # the reference must exist
    except InputError as exc:
        raise InputError(f"{at}[layout] {exc}") from None
    missing = [k for k in PER_CHIP_KEYS if k not in per_chip]
    extra = [k for k in per_chip if k not in PER_CHIP_KEYS]
    if missing or extra:
        raise InputError(
            f"{at}[per_chip] needs exactly {', '.join(PER_CHIP_KEYS)}"
            + (f"; missing {', '.join(missing)}" if missing else "")
            + (f"; unknown {', '.join(extra)}" if extra else "")
        )
    exprs = {k: _formula(per_chip[k], f"{at}[per_chip] {k}") for k in PER_CHIP_KEYS}
    chips_expr = _formula(chips, f"{at}[layout] chips")
    comm = dict(comm or {})
    groups = dict(groups or {})
    for key in comm:
        if not _IDENTIFIER.fullmatch(key):
            raise InputError(f"{at}[comm] {key!r}: use lowercase letters, digits, - and _")
    stray = [k for k in groups if k not in comm]
    if stray:
        raise InputError(f"{at}[groups] {stray[0]} is not a collective in [comm]")
    payloads = {k: _formula(v, f"{at}[comm] {k}") for k, v in comm.items()}
    group_of = {
        k: _formula(groups[k], f"{at}[groups] {k}") if k in groups else chips_expr for k in comm
    }

    degrees = tuple(BY_SYMBOL[s] for s in sorted(chips_expr.free_symbols, key=str))
    excess = sympy.S.Zero
    if flops_redundancy is not None:
        excess = _formula(flops_redundancy, f"{at}[checks] flops_redundancy")
    copies = None
    if weight_replication is not None:
        copies = _formula(weight_replication, f"{at}[checks] weight_replication")
    checks = Checks(
        reference=reference,
        flops=REF_FLOPS + excess,
        repeated="declared by the layout",
        weights=None if copies is None else REF_WEIGHTS * copies,
        kv_cache=REF_KV * _formula(kv_replication, f"{at}[checks] kv_replication"),
    )

    def build(_phase: Phase, _conventions: Conventions) -> Cost:
        t = Trace()
        symbols = {
            key: t.define(key, label, exprs[key], section=section, unit=unit, name=short)
            for key, label, section, unit, short in (
                ("flops", "FLOPs per chip", "flops", "FLOPs", "F"),
                ("weight_bytes", "weight bytes per chip", "weights", "bytes", "W"),
                ("activation_bytes", "activation bytes per chip", "activations", "bytes", "A"),
                ("kv_cache_bytes", "KV-cache bytes per chip", "kv_cache", "bytes", "KV"),
            )
        }
        collectives = []
        for key, payload in payloads.items():
            symbol = t.define(
                key,
                key.replace("_", " "),
                over_group(payload, group_of[key]),
                section="communication",
                unit="bytes",
                name=f"C_{key}",
                note="payload bytes; none on a one-chip group",
            )
            collectives.append(Collective(key, "collective", group_of[key], symbol, ""))
        return finish(
            t,
            chips=chips_expr,
            flops=symbols["flops"],
            weights=symbols["weight_bytes"],
            activations=symbols["activation_bytes"],
            kv_cache=symbols["kv_cache_bytes"],
            collectives=collectives,
            note="",  # a user layout's payloads are whatever its file declares
        )

    entry = Layout(
        name,
        layer,
        summary or f"user layout ({where or 'Python'})",
        degrees,
        (),
        build,
        checks,
        (ph,),
    )
    build(ph, Conventions())  # fail now, not at first use, if the formulas do not combine
    return register(entry)


def load_layout(path: str | Path) -> Layout:
    """Read, check and register the layout in a TOML file."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise InputError(f"{path}: {size:,} bytes; a layout file is at most {MAX_FILE_BYTES:,}")
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a directory, not a layout file") from None
    except UnicodeDecodeError:
        raise InputError(f"{path}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{path}: malformed TOML: {exc}") from None
    except RecursionError:
        raise InputError(f"{path}: nested too deeply to be a layout file") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror}") from None

    for section, value in data.items():
        if section not in _SECTIONS:
            raise InputError(f"{path}: unknown table [{section}]; tables: {', '.join(_SECTIONS)}")
        if not isinstance(value, dict):
            raise InputError(f"{path}: {section} must be a table, [{section}]")
        allowed = _SECTIONS[section]
        for key in value:
            if allowed is not None and key not in allowed:
                raise InputError(
                    f"{path}: unknown key [{section}] {key}; keys: {', '.join(allowed)}"
                )
    head = data.get("layout")
    if head is None or "per_chip" not in data:
        raise InputError(f"{path}: a layout file needs [layout] and [per_chip] tables")
    for key in ("name", "phase", "chips"):
        if key not in head:
            raise InputError(f"{path}: [layout] needs {key}")
    for key in ("name", "layer", "phase", "reference", "summary"):
        if key in head and not isinstance(head[key], str):
            raise InputError(f"{path}: [layout] {key} must be text")
    checks = data.get("checks", {})
    return define_layout(
        head["name"],
        phase=head["phase"],
        chips=head["chips"],
        per_chip=data["per_chip"],
        comm=data.get("comm"),
        groups=data.get("groups"),
        layer=head.get("layer", "attention"),
        reference=head.get("reference", "single"),
        weight_replication=checks.get("weight_replication"),
        kv_replication=checks.get("kv_replication", 1),
        flops_redundancy=checks.get("flops_redundancy"),
        summary=head.get("summary", ""),
        where=str(path),
    )
