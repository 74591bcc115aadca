"""Export every layout's metrics to Python, C, Rust, JavaScript or Go source.

run.sh takes attention layouts by name (``run.sh tp decode``) and other layers' as
``layer/name`` (``run.sh ffn/tp prefill``).

For each language, ``DIR/<lang>/`` holds one function per layer × layout × phase (one
line per derivation step, each with its label), a dispatcher ``metrics(layout, phase,
params)``, and ``run.sh LAYOUT PHASE KEY=VALUE ...`` that builds the code if needed and
prints the nine metrics as JSON. Counts are exact: Python ints, C and Rust 128-bit
integers, JavaScript BigInt, Go math/big.

The dispatcher fills defaults, and for layouts with heads (those reading num_heads or
head_dim: attention) applies hidden_size = num_heads × head_dim as the library does;
head-less layers (FFN, embedding, LM head) take hidden_size as given or its default.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import jinja2

from shardcost.errors import InputError
from shardcost.formulas import Conventions, Layout, all_layouts
from shardcost.symbolic import METRICS
from shardcost.symbolic.dimensions import DIMENSIONS, HEAD_DIM, NUM_HEADS

from .literals import LITERALS
from .printers import PRINTERS, InfixPrinter
from .program import Program, program
from .python import identifiers

VERSION = "0.1.0"
TEMPLATES = Path(__file__).resolve().parent / "templates"
LANGUAGES = tuple(PRINTERS)  # one per printer
_FILES = {
    "python": (("shardcost_metrics.py.j2", "shardcost_metrics.py"),),
    "c": (
        ("shardcost_metrics.h.j2", "shardcost_metrics.h"),
        ("shardcost_metrics.c.j2", "shardcost_metrics.c"),
        ("main.c.j2", "main.c"),
    ),
    "rust": (("metrics.rs.j2", "src/metrics.rs"), ("main.rs.j2", "src/main.rs")),
    "js": (("metrics.mjs.j2", "metrics.mjs"), ("main.mjs.j2", "main.mjs")),
    "go": (
        ("go.mod.j2", "go.mod"),
        ("metrics.go.j2", "metrics/metrics.go"),
        ("main.go.j2", "main.go"),
    ),
}
# Names a target's helpers or syntax already take; step names must avoid them.
_RESERVED = {
    "python": {"p", "json", "sys", "int", "max", "min", "SplitError", "split"},
    "c": {"p", "out", "err", "errlen", "int", "char", "const", "return"},
    "rust": {"p", "fn", "let", "match", "ceil_div", "split"},
    "js": {"p", "const", "let", "ceilDiv", "maxBig", "minBig", "split"},
    "go": {
        "p",
        "add",
        "sub",
        "neg",
        "mul",
        "quo",
        "rem",
        "lit",
        "ceilDiv",
        "maxOf",
        "minOf",
        "pick",
        "split",
        "func",
        "var",
        "type",
        "range",
        "go",
    },
}


@dataclass(frozen=True)
class CheckView:
    """A requirement as printed code: the values, and a condition true when it fails."""

    total: str
    parts: str
    total_name: str
    parts_name: str
    why: str
    fails: str


def _go_name(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_"))


def _function_name(prog: Program, taken: set[str]) -> str:
    """``prog.name`` as an ASCII identifier no other function of the export has, nor the
    same Go name: a layout name is text (the Python API takes any), never code."""
    base = re.sub(r"[^A-Za-z0-9_]", "_", prog.name)
    if not re.match(r"[A-Za-z]", base):
        base = f"f_{base}"
    name = base
    for n in itertools.count(2):
        if name not in taken and _go_name(name) not in taken:
            break
        name = f"{base}_{n}"
    taken |= {name, _go_name(name)}
    return name


def _function(prog: Program, language: str, taken: set[str]) -> dict[str, object]:
    symbols = [*(d.symbol for d in prog.inputs), *(s.symbol for s in prog.steps)]
    names = identifiers(symbols, _RESERVED[language])
    printer: InfixPrinter = PRINTERS[language](names)
    applicable = prog.layout.conventions_for(prog.phase)
    values = prog.conventions.as_dict()
    conventions = ", ".join(f"{n}={json.dumps(values[n])}" for n in applicable) or "none apply"
    name = _function_name(prog, taken)
    return {
        "name": name,
        "go_name": _go_name(name),
        "layer": prog.layout.layer,
        "layout": prog.layout.name,
        # run.sh's LAYOUT: attention layouts by name, others as layer/name (ffn/tp)
        "key": prog.layout.name
        if prog.layout.layer == "attention"
        else f"{prog.layout.layer}/{prog.layout.name}",
        "phase": str(prog.phase),
        "summary": prog.layout.summary,
        "conventions": conventions,
        "inputs": [(names[d.symbol], d.name) for d in prog.inputs],
        # heads among the inputs: the dispatcher applies hidden_size = num_heads × head_dim
        # (and num_kv_heads' default); head-less layers take hidden_size as it comes
        "shaped": any(d.name in (NUM_HEADS.name, HEAD_DIM.name) for d in prog.inputs),
        "checks": [
            CheckView(
                printer.doprint(c.total),
                printer.doprint(c.parts),
                c.total_name,
                c.parts_name,
                c.why,
                printer.fails(c.total, c.parts, c.either),
            )
            for c in prog.checks
        ],
        "lines": [(names[s.symbol], printer.doprint(s.expr), s.comment) for s in prog.steps],
        "outputs": [(n, printer.doprint(e)) for n, e in prog.outputs],
    }


def _environment(
    language: str, conventions: Conventions, layouts: tuple[Layout, ...]
) -> jinja2.Environment:
    """The templates' environment for ``language``: text reaches the source only through
    its filters, ``string`` (a string literal denoting the text) and ``comment`` (the text
    safe inside a comment), and through ``header``, whose lines are comments."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    chosen = ", ".join(f"{k}={json.dumps(v)}" for k, v in conventions.as_dict().items())
    names = ", ".join(f"{lay.layer}/{lay.name}" for lay in layouts)

    def header(comment: str) -> str:
        lines = [
            f"Generated by shardcost {VERSION} from its symbolic derivations: do not edit;",
            "regenerate with `shardcost export`.",
            f"Layouts: {names}.",
            f"Conventions: {chosen}.",
        ]
        return "\n".join(f"{comment} {literals.comment(line)}" for line in lines)

    literals = LITERALS[language]
    env.filters["string"] = literals.string
    env.filters["comment"] = literals.comment
    env.globals["header"] = header
    return env


def export(
    language: str,
    out_dir: Path,
    *,
    conventions: Conventions | None = None,
    layouts: Iterable[Layout] | None = None,
) -> list[Path]:
    """Write ``out_dir/<language>/``: the source, a dispatcher and run.sh. The paths written."""
    if language not in LANGUAGES:
        raise InputError(f"--lang {language!r} is unknown; languages: {', '.join(LANGUAGES)}")
    conventions = conventions or Conventions()
    chosen = tuple(layouts) if layouts is not None else all_layouts()
    taken: set[str] = set()
    functions = [
        _function(program(lay, ph, _applicable(conventions, lay, ph)), language, taken)
        for lay in chosen
        for ph in lay.phases
    ]
    defaults = [(d.name, d.default) for d in DIMENSIONS]
    env = _environment(language, conventions, chosen)
    context = {
        "functions": functions,
        "keys": [d.name for d in DIMENSIONS],
        "metric_names": list(METRICS),
        "metrics": json.dumps(list(METRICS)),
        "defaults": defaults if language != "python" else repr(dict(defaults)),
        "js_defaults": "{"
        + ", ".join(f"{k}: {'null' if v is None else f'{v}n'}" for k, v in defaults)
        + "}",
        "default_of": lambda key: dict(defaults)[key],
    }
    target = out_dir / language
    written = []
    for template, name in (*_FILES[language], ("run.sh.j2", "run.sh")):
        path = target / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(
            env.get_template(f"{language}/{template}").render(**context), encoding="utf-8"
        )
        written.append(path)
    (target / "run.sh").chmod(0o755)
    return written


def _applicable(conventions: Conventions, layout: Layout, phase: object) -> Conventions:
    """``conventions`` with those that do not apply to this layout and phase at default,
    so each function's header names only what shapes it."""
    applicable = set(layout.conventions_for(phase))  # type: ignore[arg-type]
    values = {k: v for k, v in conventions.as_dict().items() if k in applicable}
    return Conventions(**values)
