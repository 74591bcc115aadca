"""Numeric commands without SymPy: cached straight-line programs, run and rendered.

``shardcost metrics`` first looks for the program ``codegen.numeric`` generated for the
same layout, layer, phase, hardware and conventions (``shardcost.cache``, keyed by a
digest of the package's sources and SymPy's version). A hit runs it and prints: no SymPy,
no formulas, a few milliseconds. A miss, or any input the program is not sure of,
returns None, and the command line runs the engine (which then stores the program for
next time). The answer is the same either way, digit for digit (``tests/cli``).

Standard library only, and only the light parts of the package.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from fractions import Fraction
from typing import Any

from shardcost import cache

KIND = "numeric"
_INTEGER = re.compile(r"[0-9]{1,60}")  # a plain positive count; anything else: the engine
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_OPTIONS = ("--phase", "--layer", "--hardware", "--format")
_FORMATS = ("table", "json", "markdown")
_PHASES = ("prefill", "decode")


class Unsure(Exception):
    """The program cannot give a number it is sure of: the engine decides."""


# ------------------------------------------------------------ runtime of the programs


def div(a: int | Fraction, b: int | Fraction) -> int | Fraction:
    """``a / b`` exactly: an int when it divides evenly, else a Fraction."""
    if b == 0:
        raise Unsure("division by zero")
    if type(a) is int and type(b) is int:
        q, r = divmod(a, b)
        return q if r == 0 else Fraction(a, b)
    q = Fraction(a) / b
    return q.numerator if q.denominator == 1 else q


def power(base: int | Fraction, exp: int | Fraction) -> int | Fraction:
    """``base ** exp`` for a whole ``exp`` known only at run time (exact); else unsure."""
    if type(exp) is not int and not (type(exp) is Fraction and exp.denominator == 1):
        raise Unsure("a power that is not whole")
    e = int(exp)
    if abs(e) > 100_000:
        raise Unsure("a power too large to compute exactly here")
    if e < 0:
        return div(1, base**-e)
    return base**e


def ceil_log2(n: int | Fraction) -> int:
    """⌈log2 n⌉ of a whole n ≥ 1 (``symbolic.functions.CeilLog2``); else unsure."""
    if type(n) is not int or n < 1:
        raise Unsure("⌈log2⌉ of a number that is not a whole one of at least 1")
    return (n - 1).bit_length()


def whole(value: int | Fraction) -> int | Fraction:
    """A Fraction that is a whole number as an int (a count computed through a fraction of
    a byte, say); anything else as it is."""
    if type(value) is Fraction and value.denominator == 1:
        return value.numerator
    return value


def nothing() -> int:
    """A Piecewise with no branch that holds: SymPy gives no number; neither do we."""
    raise Unsure("no branch holds")


def resolve(
    given: Mapping[str, int],
    used: Sequence[str],
    defaults: Mapping[str, int | None],
    relations: Sequence[tuple[str, str, str]],
    borrowed: Sequence[tuple[str, str]],
    *,
    decoupled: bool = False,
) -> dict[str, int] | None:
    """Every dimension the layout reads, as ``formulas.inputs`` completes them: the
    relations (any two of ``total = left × right`` give the third, the right factor's
    default first), then the defaults, then the dimensions that default to another's
    value. None where the inputs do not hold together (the engine says why).

    ``decoupled``: all three of a relation given are kept as they are, agreeing or not
    (``resolve_inputs(decoupled_heads=True)``: a model's layers)."""
    if any(k not in used or v < 1 for k, v in given.items()):
        return None
    values: dict[str, int] = dict(given)
    for t, left, right in relations:
        total, lv, rv = values.get(t), values.get(left), values.get(right)
        if total is None:
            lv = defaults[left] if lv is None else lv
            rv = defaults[right] if rv is None else rv
            if lv is None or rv is None:
                return None
            total = lv * rv
        elif lv is None or rv is None:
            if lv is None and rv is None:
                rv = defaults[right]
                if rv is None:
                    return None
            known = rv if lv is None else lv
            if known < 1 or total % known:
                return None
            if lv is None:
                lv = total // known
            else:
                rv = total // known
        elif total != lv * rv and not decoupled:
            return None
        values |= {t: total, left: lv, right: rv}  # type: ignore[dict-item]
    for name, default in defaults.items():
        if name not in values:
            values[name] = default  # type: ignore[assignment]
    for name, source in borrowed:
        if name in used and name not in given:
            values[name] = values[source]
    out = {name: values[name] for name in used}
    return None if any(v is None for v in out.values()) else out


# ------------------------------------------------------------ the command line's fast path


def _scan(
    words: Sequence[str], options: Sequence[str]
) -> tuple[dict[str, str], list[str], list[tuple[str, str]]] | None:
    """``words`` as (options given, positional words, KEY=VALUE pairs in order), or None
    for anything this small parser is not sure of: an option not in ``options`` (help, an
    abbreviation, a file), one given twice, a key given twice."""
    opts: dict[str, str] = {}
    positional: list[str] = []
    assignments: list[tuple[str, str]] = []
    rest = list(words)
    while rest:
        word = rest.pop(0)
        if word.startswith("-"):
            name, eq, val = word.partition("=")
            if name not in options or name in opts:
                return None
            if not eq:
                if not rest:
                    return None
                val = rest.pop(0)
            opts[name] = val
        elif "=" in word:
            key, _, val = word.partition("=")
            if not _NAME.fullmatch(key) or any(k == key for k, _ in assignments):
                return None
            assignments.append((key, val))
        else:
            positional.append(word)
    return opts, positional, assignments


def _parse_metrics(argv: Sequence[str]) -> dict[str, Any] | None:
    """``metrics LAYOUT [--phase P] [--layer L] [--hardware H] [--format F] KEY=VALUE...``,
    or None for anything else (help, files, other options: the full command line)."""
    if len(argv) < 2 or argv[0] != "metrics":
        return None
    scanned = _scan(argv[1:], _OPTIONS)
    if scanned is None or len(scanned[1]) != 1:
        return None
    opts, (layout,), assignments = scanned
    fmt = opts.get("--format", "table")
    phase = opts.get("--phase", "prefill")
    if fmt not in _FORMATS or phase not in _PHASES:
        return None
    hardware = opts.get("--hardware")
    if hardware is not None and (hardware.endswith(".toml") or "/" in hardware):
        return None  # a file: its text would have to be part of the key
    return {
        "layout": layout,
        "layer": opts.get("--layer", "attention"),
        "phase": phase,
        "hardware": hardware,
        "format": fmt,
        "assignments": assignments,
    }


def _split(assignments: Sequence[tuple[str, str]]) -> tuple[dict[str, int], list[list[str]]]:
    """Plain counts (the program's inputs) and the rest (text that fixes the program:
    conventions; anything else makes the program refuse, and the engine answers)."""
    counts: dict[str, int] = {}
    fixed: list[list[str]] = []
    for key, text in assignments:
        if _INTEGER.fullmatch(text):
            counts[key] = int(text)
        else:
            fixed.append([key, text])
    return counts, sorted(fixed)


def metrics_key(args: Mapping[str, Any]) -> str:
    """The cache key of the program for a parsed ``metrics`` call."""
    _, fixed = _split(args["assignments"])
    what = [args["layout"], args["layer"], args["phase"], args["hardware"], fixed]
    return cache.key("metrics", json.dumps(what))


def _load(source: str) -> Callable[[dict[str, int]], Any]:
    namespace: dict[str, Any] = {"__name__": "shardcost_numeric_program"}
    exec(compile(source, "<shardcost numeric program>", "exec"), namespace)
    return namespace["run"]  # type: ignore[no-any-return]


def run_metrics(argv: Sequence[str]) -> tuple[str, list[str]] | None:
    """The output of ``shardcost metrics ...`` (stdout text, stderr lines) from a cached
    program, or None: no program yet, or not sure (then the engine answers)."""
    args = _parse_metrics(argv)
    if args is None:
        return None
    source = cache.read(KIND, metrics_key(args), ".py")
    if source is None:
        return None
    counts, _ = _split(args["assignments"])
    try:
        answer = _load(source)(counts)
    except Exception:  # a damaged entry, or a value the program cannot take: the engine
        return None
    if answer is None:
        return None
    view, out = answer
    if args["format"] == "json":
        return json.dumps(out, indent=2) + "\n", [f"note: {n}" for n in view["notes"]]
    from shardcost.reports.text import render_result

    return render_result(view, args["format"]), []


def attempt(run: Callable[[Sequence[str]], Any], argv: Sequence[str]) -> int | None:
    """Print what ``run`` answers for ``argv`` from the cache (its text, or its text and
    the notes for stderr) and return the exit status, or None: no answer, or any failure
    (the fast path never fails a command the engine can answer)."""
    try:
        done = run(argv)
    except Exception:
        return None
    if done is None:
        return None
    text, notes = (done, []) if isinstance(done, str) else done
    status = _write(text)
    if status == 0:
        for line in notes:
            print(line, file=sys.stderr)
    return status


def try_metrics(argv: Sequence[str]) -> int | None:
    """Print ``shardcost metrics ...`` from a cached program and return 0, or None."""
    return attempt(run_metrics, argv)


def answered_call(args: Any, assignments: Sequence[str]) -> dict[str, Any]:
    """The call the engine answered (``args``: argparse's namespace; ``assignments``: its
    KEY=VALUE words) as the fast paths' parsers give it: each entry's key is computed
    from this, so it is stored under the key a later call looks for."""
    return {
        "layout": args.layout,
        "layer": getattr(args, "layer", None),
        "phase": args.phase,
        "hardware": args.hardware,
        "assignments": [tuple(a.partition("=")[::2]) for a in assignments],
    }


def store_metrics(argv_assignments: Sequence[str], args: Any, result: Any) -> None:
    """After the engine answered ``metrics``: write the program for next time, when the
    call is one a program can take (counts as plain numbers, conventions as text, a
    catalog chip, no hardware fields)."""
    from shardcost.codegen.numeric import Unsupported, metrics_source
    from shardcost.formulas.conventions import BY_NAME as CONVENTIONS

    if not result.inputs.layout.built_in or getattr(args, "file", None):
        return  # a user's layout: its program would outlive the file it came from
    parsed = answered_call(args, argv_assignments)
    counts, fixed = _split(parsed["assignments"])
    if any(k not in result.inputs.dims for k in counts):
        return
    if any(k not in CONVENTIONS for k, _ in fixed):
        return
    if args.hardware is not None and (args.hardware.endswith(".toml") or "/" in args.hardware):
        return
    try:
        source = metrics_source(result)
    except Unsupported:
        return
    except Exception:  # the answer is printed already; a program we cannot write is a bug
        if os.environ.get("SHARDCOST_DEBUG"):  # that tests show (they set this), not users
            raise
        return
    cache.write(KIND, metrics_key(parsed), source, ".py")


# ------------------------------------------------------------ compare (the main job)

_COMPARE_OPTIONS = ("--phase", "--layer", "--hardware", "--format")


def _parse_compare(argv: Sequence[str]) -> dict[str, Any] | None:
    """``[compare] [LAYOUT...] [--phase P|both] [--layer L] [--hardware H] [--format F]
    KEY=VALUE...`` (table or JSON, no --chips, no files), or None."""
    args = list(argv)
    own = ("-h", "--help", "--version")
    if not args or (args[0] not in own and (args[0][:1] == "-" or "=" in args[0])):
        args = ["compare", *args]
    if args[0] != "compare":
        return None
    scanned = _scan(args[1:], _COMPARE_OPTIONS)
    if scanned is None or len(set(scanned[1])) != len(scanned[1]):
        return None  # a layout named twice: the engine says so
    opts, names, assignments = scanned
    fmt = opts.get("--format", "table")
    phase = opts.get("--phase", "both")
    hardware = opts.get("--hardware")
    if fmt not in ("table", "json") or phase not in (*_PHASES, "both"):
        return None
    if hardware is not None and (hardware.endswith(".toml") or "/" in hardware):
        return None
    return {
        "names": names,
        "layer": opts.get("--layer", "attention"),
        "phase": phase,
        "hardware": hardware,
        "format": fmt,
        "assignments": assignments,
    }


def compare_key(args: Mapping[str, Any]) -> str:
    """The cache key of the comparison's manifest (which names each layout's program)."""
    _, fixed = _split(args["assignments"])
    what = [args["names"], args["layer"], args["phase"], args["hardware"], fixed]
    return cache.key("compare", json.dumps(what))


def _label(name: str, degrees: Sequence[Sequence[str]], dims: Mapping[str, int]) -> str:
    """``reports.tables.layout_label``: the name, with its degrees when it has several."""
    if len(degrees) < 2 or not all(d in dims for d, _ in degrees):
        return name
    return f"{name} ({', '.join(f'{short}={dims[d]}' for d, short in degrees)})"


def run_compare(argv: Sequence[str]) -> tuple[str, list[str]] | None:
    """The output of ``shardcost compare ...`` from cached programs, or None."""
    args = _parse_compare(argv)
    if args is None:
        return None
    text = cache.read(KIND, compare_key(args), ".json")
    if text is None:
        return None
    manifest = json.loads(text)
    counts, _ = _split(args["assignments"])
    used = {d for table in manifest["tables"] for lay in table["layouts"] for d in lay["used"]}
    if any(k not in used for k in counts):
        return None  # a key no layout reads: the engine says so
    programs: dict[str, Any] = {}
    tables, entries, merged = [], [], {}
    for table in manifest["tables"]:
        columns = []
        for lay in table["layouts"]:
            key = lay["program"]
            if key not in programs:
                source = cache.read(KIND, key, ".py")
                if source is None:
                    return None
                programs[key] = _load(source)
            answer = programs[key]({k: v for k, v in counts.items() if k in lay["used"]})
            if answer is None:
                return None
            view, out = answer
            dims = dict(view["dims"])
            columns.append(
                {
                    "label": _label(lay["name"], lay["degrees"], dims),
                    "chips": view["chips"],
                    "metrics": view["metrics"],
                    "timing": view["timing"],
                    "notes": view["notes"],
                }
            )
            entries.append(
                {"layout": out["layout"], "phase": out["phase"], "chips": view["chips"]}
                | {k: v for k, v in out.items() if k not in ("layout", "phase", "chips")}
            )
            merged |= out["params"]
        tables.append({"heading": table["heading"], "columns": columns, "excluded": []})
    if args["format"] == "json":
        return json.dumps(entries, indent=2) + "\n", []
    from shardcost.reports.text import render_comparison, value

    shown = "  ".join(f"{k}={value(merged[k])}" for k in manifest["keys"] if k in merged)
    head = [f"shardcost: {manifest['title']}", "", f"parameters: {shown}"]
    body = [render_comparison(t, "table") for t in tables]
    return "\n".join([*head, "", ""]) + "\n".join(body), []


def try_compare(argv: Sequence[str]) -> int | None:
    """Print ``shardcost compare ...`` from cached programs and return 0, or None."""
    return attempt(run_compare, argv)


def _write(text: str) -> int:
    """Print ``text``: 0, or 2 with one line when standard output cannot take it (a full
    disk); a reader that went away (``| head``) is not an error."""
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except OSError as exc:
        from shardcost.files import silence_stdout

        silence_stdout()
        if isinstance(exc, BrokenPipeError):
            return 0
        print(f"shardcost: error: cannot write the output: {exc.strerror}", file=sys.stderr)
        return 2
    return 0


def store_compare(
    args: Any, names: Sequence[str], pairs: Sequence[tuple[str, str]], tables: Any, title: str
) -> None:
    """After the engine answered ``compare`` (no --chips, table or JSON): write each
    layout's program and the manifest that lists them."""
    try:
        _store_compare(args, names, pairs, tables, title)
    except Exception:
        if os.environ.get("SHARDCOST_DEBUG"):
            raise


def _store_compare(
    args: Any, names: Sequence[str], pairs: Sequence[tuple[str, str]], tables: Any, title: str
) -> None:
    from shardcost.codegen.numeric import Unsupported, metrics_source
    from shardcost.formulas import KEYS
    from shardcost.formulas.conventions import BY_NAME as CONVENTIONS
    from shardcost.formulas.inputs import applicable_params

    if args.chips or args.format not in ("table", "json") or getattr(args, "output", None):
        return
    if getattr(args, "file", None):
        return  # user layouts: their programs would outlive the files they came from
    if not all(r.inputs.layout.built_in for table in tables for r in table.results):
        return
    if args.hardware is not None and (args.hardware.endswith(".toml") or "/" in args.hardware):
        return
    counts, fixed = _split(pairs)
    if any(k not in CONVENTIONS for k, _ in fixed):
        return
    dims = {k for table in tables for r in table.results for k in r.inputs.dims}
    if any(k not in dims for k in counts):
        return
    manifest: dict[str, Any] = {"title": title, "keys": list(KEYS), "tables": []}
    for table in tables:
        if table.excluded:
            return
        layouts = []
        for r in table.results:
            lay = r.inputs.layout
            mine = applicable_params(lay, r.inputs.phase, dict(pairs))
            key = metrics_key(
                {
                    "layout": lay.name,
                    "layer": lay.layer,
                    "phase": str(r.inputs.phase),
                    "hardware": args.hardware,
                    "assignments": list(mine.items()),
                }
            )
            try:
                source = metrics_source(r)
            except Unsupported:
                return
            if not cache.write(KIND, key, source, ".py"):
                return
            layouts.append(
                {
                    "name": lay.name,
                    "degrees": [[d.name, d.short] for d in lay.degrees],
                    "used": list(r.inputs.dims),
                    "program": key,
                }
            )
        from shardcost.reports.tables import comparison_view

        heading = comparison_view(table)["heading"]
        manifest["tables"].append({"heading": heading, "layouts": layouts})
    parsed = {
        "names": list(names),
        "layer": args.layer,
        "phase": args.phase,
        "hardware": args.hardware,
        "assignments": list(pairs),
    }
    cache.write(KIND, compare_key(parsed), json.dumps(manifest), ".json")
