"""Export every layout's metrics to Python, C, Rust, JavaScript or Go source.

run.sh takes attention layouts by name (``run.sh tp decode``, or ``attention/tp``) and
other layers' as ``layer/name`` (``run.sh ffn/tp prefill``); it refuses a key the layout
does not read, as ``shardcost metrics`` does.

For each language, ``DIR/<lang>/`` holds one function per layer × layout × phase (one
line per derivation step, each with its label), a dispatcher ``metrics(layout, phase,
params)``, and ``run.sh LAYOUT PHASE KEY=VALUE ...`` that builds the code if needed and
prints the nine metrics as JSON. Counts are exact: Python ints, C and Rust 128-bit
integers, JavaScript BigInt, Go math/big.

Each function is printed from its Program by its language's program printer
(``codegen.program_printers``), so it takes the parameters as given and fills the rest
as the library does: each of its layer's relations derives a missing dimension from the
other two (or checks all three), a dimension that defaults to another takes its value,
and the rest take their defaults. The templates hold only the module frame: helpers,
the dispatcher, main and run.sh.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Iterable
from importlib.metadata import version
from pathlib import Path
from typing import Any

import jinja2

from shardcost.errors import InputError
from shardcost.formulas import Conventions, Layout, all_layouts
from shardcost.formulas.conventions import TIMING_CONVENTIONS
from shardcost.symbolic import METRICS
from shardcost.symbolic.dimensions import DIMENSIONS

from .literals import LITERALS
from .printers import PRINTERS
from .program import Program, program
from .program_printers import PROGRAM_PRINTERS, ProgramPrinter

VERSION = version("shardcost")
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


def _function_name(prog: Program, printer: type[ProgramPrinter], taken: set[str]) -> str:
    """``prog.name`` as an ASCII identifier that no other function of the export has, as
    written or as its target defines it (Go's capitalised name): a layout name is text
    (the Python API takes any), never code."""
    base = re.sub(r"[^A-Za-z0-9_]", "_", prog.name)
    if not re.match(r"[A-Za-z]", base):
        base = f"f_{base}"
    name = base
    for n in itertools.count(2):
        if name not in taken and printer.callable_name(name) not in taken:
            break
        name = f"{base}_{n}"
    taken |= {name, printer.callable_name(name)}
    return name


def _function(prog: Program, language: str, taken: set[str]) -> dict[str, object]:
    """One exported function: its source, and what the frame's dispatcher needs."""
    kind = PROGRAM_PRINTERS[language]
    printer = kind(prog)
    name = _function_name(prog, kind, taken)
    layout = prog.layout
    return {
        "name": printer.callable_name(name),
        # run.sh's LAYOUT: attention layouts by name, others as layer/name (ffn/tp)
        "key": layout.name if layout.layer == "attention" else f"{layout.layer}/{layout.name}",
        "phase": str(prog.phase),
        "source": printer.function(name),
        "inputs": [dim.name for dim in prog.inputs],  # the keys it reads (run.sh checks)
        "prototype": printer.prototype(name),
    }


def _shell_quote(text: str) -> str:
    """``text`` as one single-quoted word of a POSIX shell script."""
    return "'" + text.replace("'", "'\\''") + "'"


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
    chosen = ", ".join(
        f"{k}={json.dumps(v)}"
        for k, v in conventions.as_dict().items()
        if k not in TIMING_CONVENTIONS  # an export computes no timing
    )
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
    env.filters["shquote"] = _shell_quote
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
    if conventions != conventions.untimed():
        raise InputError(
            "an export computes the nine metrics, not timing: timing conventions "
            f"({', '.join(TIMING_CONVENTIONS)}) do not apply"
        )
    chosen = tuple(layouts) if layouts is not None else all_layouts()
    taken: set[str] = set()
    functions = [
        _function(program(lay, ph, _applicable(conventions, lay, ph)), language, taken)
        for lay in chosen
        for ph in lay.phases
    ]
    env = _environment(language, conventions, chosen)
    context: dict[str, Any] = {
        "functions": functions,
        "keys": [d.name for d in DIMENSIONS],
        "metric_names": list(METRICS),
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
