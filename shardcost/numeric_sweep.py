"""``shardcost sweep`` without SymPy: the engine's blocked programs, cached, run again.

After the engine answered ``shardcost sweep LAYOUT KEY=VALUES...`` (CSV or JSON lines, a
built-in layout, a catalog chip or none), ``store_sweep`` writes one cache entry for the
layout, layer, phase, hardware, conventions and the set of keys given (each swept or
not): the blocked float64 program the engine generated for each combination of the
switches and each way a chunk's inputs vary (``codegen.blocked``), the sides of the
relations and requirements rows are dropped by, the preamble that completes the inputs
and the grid's plain data (inputs, columns, switches, catalog figures). A later call with
other values is answered from it by ``try_sweep``: the entry's rows
(``shardcost.cached_sweep``) in the engine's own loop (``codegen.sweep_rows``) and
writers (``codegen.sweep_text``), numpy and the standard library only; the same bytes,
rows dropped for the same reasons.

What the cached programs cannot settle (a count at or past 2^53, which the engine
recomputes exactly; an input past int64) goes back to the engine: before anything is
written, by returning None (the engine then answers the whole command); after rows
already went to standard output, by building the engine's grid in this process and
letting it evaluate the rest. Output to a file is written through a temporary file, so
there the engine always starts afresh.

Standard library only at module level.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from shardcost import cache
from shardcost.numeric import _NAME, _scan, answered_call

if TYPE_CHECKING:
    import argparse

    from shardcost.cached_sweep import CachedRows

KIND = "numeric"
ARROW_ROWS = 200_000  # rows from which pyarrow's CSV writer repays importing it (~50 ms)
REPLAY_ROWS = 2048  # rows of each combination the entry must answer as the engine did
_OPTIONS = ("--phase", "--layer", "--hardware", "--format", "-o", "--output", "--engine")
_FLAGS = ("--progress", "--no-progress")
_DIGITS = "[0-9]{1,40}"
# a count's values as the fast path reads them: a list, a range, a geometric range
_COUNTS = re.compile(rf"{_DIGITS}(,{_DIGITS})*|{_DIGITS}:{_DIGITS}(:\*?{_DIGITS})?")
_MAX_COUNT = 10**24  # formulas.inputs.MAX_COUNT


# ------------------------------------------------------------ the command line


def _parse(argv: Sequence[str]) -> dict[str, Any] | None:
    """``sweep LAYOUT [--phase P] [--layer L] [--hardware NAME] [--format csv|jsonl]
    [-o FILE] [--[no-]progress] [--engine local] KEY=VALUES...``, or None for anything
    else (Parquet, Dask, files, help, an option given twice)."""
    if len(argv) < 2 or argv[0] != "sweep":
        return None
    words = list(argv[1:])
    flags = [w for w in words if w in _FLAGS]
    if len(flags) > 1:
        return None
    progress = None if not flags else flags[0] == "--progress"
    words = [w for w in words if w not in _FLAGS]
    # argparse takes the first word that is no option (nor an option's value) as LAYOUT,
    # even one holding "=": so must this
    i = 0
    while i < len(words) and words[i].startswith("-"):
        i += 1 if "=" in words[i] else 2
    if i >= len(words) or "=" in words[i]:
        return None
    scanned = _scan(words, _OPTIONS)
    if scanned is None or len(scanned[1]) != 1:
        return None
    opts, (layout,), assignments = scanned
    if any(v.startswith("-") or not v for v in opts.values()):
        return None  # argparse reads these otherwise (or refuses them)
    if "-o" in opts and "--output" in opts:
        return None
    output = opts.get("-o", opts.get("--output"))
    phase = opts.get("--phase", "prefill")
    hardware = opts.get("--hardware")
    if phase not in ("prefill", "decode") or opts.get("--engine", "local") != "local":
        return None
    if _is_file(layout) or (hardware is not None and _is_file(hardware)):
        return None  # a file: its text would have to be part of the key
    fmt = opts.get("--format")
    if fmt is None:
        from pathlib import PurePath  # loaded with ``shardcost`` already

        suffix = PurePath(output).suffix.lower() if output else ""
        fmt = {".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "", ".pq": ""}.get(suffix, "csv")
    if fmt not in ("csv", "jsonl"):
        return None
    return {
        "layout": layout,
        "layer": opts.get("--layer", "attention"),
        "phase": phase,
        "hardware": hardware,
        "format": fmt,
        "output": output,
        "progress": progress,
        "assignments": assignments,
    }


def _is_file(name: str) -> bool:
    return name.endswith(".toml") or "/" in name


def _split(assignments: Sequence[tuple[str, str]]) -> tuple[dict[str, str], list[list[str]]]:
    """Counts' values (the programs' inputs, as text) and the rest (text that fixes the
    programs: conventions; anything else is never stored, so never found)."""
    counts: dict[str, str] = {}
    fixed: list[list[str]] = []
    for key, text in assignments:
        if _COUNTS.fullmatch(text):
            counts[key] = text
        else:
            fixed.append([key, text])
    return counts, sorted(fixed)


def _count(raw: str) -> int:
    """A count as ``formulas.inputs.parse_count`` reads plain digits; ValueError where it
    refuses them (the engine then says why)."""
    value = int(raw)
    if not 1 <= value <= _MAX_COUNT:
        raise ValueError(raw)
    return value


def values_of(counts: Mapping[str, str]) -> dict[str, Sequence[int]]:
    """Each count's values as the engine's ``parse_values`` gives them (a list, or a
    ``Range``); an error wherever it would refuse them."""
    from shardcost.codegen.sweep_rows import numbers

    return {k: numbers(k, text, _count, whole=True) for k, text in counts.items()}


def swept(text: str) -> bool:
    """Whether a count's values (``_COUNTS``) are more than one, counted without building
    them (nor importing numpy, which a sweep without an entry would import for nothing);
    ``values_of`` must agree."""
    if ":" not in text:
        return len({int(v) for v in text.split(",")}) > 1
    start, stop, *step = text.split(":")
    if step and step[0].startswith("*"):
        return int(start) * int(step[0][1:]) <= int(stop)
    return int(start) + int(step[0] if step else 1) <= int(stop)


def sweep_key(args: Mapping[str, Any]) -> str:
    """The cache key of a sweep's entry: layout, layer, phase, hardware, conventions, and
    which counts are given, each swept (more than one value) or not."""
    counts, fixed = _split(args["assignments"])
    given = sorted([k, swept(text)] for k, text in counts.items())
    what = [args["layout"], args["layer"], args["phase"], args["hardware"], fixed, given]
    return cache.key("sweep", json.dumps(what))


def _agree(counts: Mapping[str, str], values: Mapping[str, Sequence[int]]) -> bool:
    return all(swept(text) == (len(values[k]) > 1) for k, text in counts.items())


# ------------------------------------------------------------ the fast path


def try_sweep(argv: Sequence[str]) -> int | None:
    """Write ``shardcost sweep ...`` from a cached entry and return its exit status, or
    None (no entry, or not sure: the engine answers)."""
    try:
        args = _parse(argv)
        if args is None or not cache.enabled():
            return None
        text = cache.read(KIND, sweep_key(args), ".json")
        if text is None:
            return None
        counts, _ = _split(args["assignments"])
        values = values_of(counts)
        if not _agree(counts, values):
            return None
        from shardcost.cached_sweep import CachedRows

        rows = CachedRows(json.loads(text), values, _handover(args))
    except Exception:  # no entry, a damaged one, values the engine refuses: the engine
        return None
    return _write(rows, args)


def _handover(args: Mapping[str, Any]) -> Callable[[CachedRows], Any]:
    def engine(rows: CachedRows) -> Any:
        """The engine's grid of the same sweep (SymPy), to evaluate what is left."""
        from shardcost.codegen.sweep import grid, parse_values
        from shardcost.errors import InternalError
        from shardcost.formulas import get_layout

        given = {k: parse_values(k, t) for k, t in args["assignments"]}
        layout = get_layout(args["layout"], args["layer"])
        g = grid(layout, args["phase"], given, args["hardware"])
        if g.columns != rows.columns or g.total != rows.total or g.combos != rows.combos:
            raise InternalError("the cached sweep is not the engine's")
        return g

    return engine


def _write(rows: CachedRows, args: Mapping[str, Any]) -> int | None:
    """``_cmd_sweep``'s local sweep, from ``rows``: its output, summary and exit status;
    None where the engine must answer instead."""
    import warnings

    from shardcost.cached_sweep import Decline
    from shardcost.codegen.sweep_rows import Progress, summary, write_rows
    from shardcost.codegen.sweep_text import TextWriter, _byte_sink, arrow, text_sink
    from shardcost.errors import WideCountWarning

    started = time.perf_counter()
    fmt, output = args["format"], args["output"]
    target = None
    if output is not None:
        from pathlib import Path

        target = Path(output)
    pa = arrow() if fmt == "csv" and rows.total >= ARROW_ROWS else None
    bar = Progress(rows.total, sys.stderr, args["progress"])
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", WideCountWarning)
            if target is not None:
                with text_sink(target, fmt, rows.columns, pa) as write:
                    result = write_rows(rows, write, bar)
            else:
                sink = _byte_sink(sys.stdout)

                def counted(data: Any) -> Any:
                    rows.started = True
                    return sink(data)

                result = write_rows(rows, TextWriter(counted, fmt, rows.columns, pa=pa).write, bar)
                sys.stdout.flush()
    except Decline:
        return None
    except KeyboardInterrupt:
        return 130
    except BaseException as exc:
        if not rows.started:
            return None  # nothing written: the engine answers (and says what is wrong)
        return _failed(exc, target)
    result.seconds = time.perf_counter() - started
    for warning in caught:
        print(f"shardcost: warning: {warning.message}", file=sys.stderr)
    print(summary(result, target), file=sys.stderr)
    return 0


def _failed(exc: BaseException, target: object) -> int:
    """What ``shardcost.cli`` does with an error once rows went to standard output (the
    engine, handed the rest, met it): the same line, the same exit status."""
    from shardcost.errors import InputError, InternalError
    from shardcost.files import printable, silence_stdout

    if isinstance(exc, BrokenPipeError):
        silence_stdout()
        return 0
    if isinstance(exc, OSError):
        exc = InputError(f"cannot write {target}: {exc.strerror or exc}")
    if isinstance(exc, InputError):
        print(f"shardcost: error: {printable(exc)}", file=sys.stderr)
        return 2
    if isinstance(exc, InternalError):
        print(f"shardcost: internal error: {printable(exc)} (please report this)", file=sys.stderr)
        return 3
    if os.environ.get("SHARDCOST_DEBUG") or not isinstance(exc, Exception):
        raise exc
    print(
        f"shardcost: internal error: {type(exc).__name__}: {printable(exc)} "
        "(please report this; SHARDCOST_DEBUG=1 shows the traceback)",
        file=sys.stderr,
    )
    return 3


# ------------------------------------------------------------ storing (after the engine)


def store_sweep(args: argparse.Namespace, fmt: str) -> None:
    """After the engine answered ``sweep`` (local, CSV or JSON lines): write the entry for
    next time, when the call is one the cached programs can take."""
    try:
        _store(args, fmt)
    except Exception:
        if os.environ.get("SHARDCOST_DEBUG"):
            raise  # the answer is written already; an entry we cannot write is a bug


def _store(args: argparse.Namespace, fmt: str) -> None:
    from shardcost.codegen.sweep import grid, parse_values
    from shardcost.formulas.conventions import BY_NAME as CONVENTIONS
    from shardcost.formulas.hardware import SUPPORTS_OVERLAP
    from shardcost.formulas.registry import get_layout
    from shardcost.symbolic.dimensions import BY_NAME as DIMENSIONS

    if not cache.enabled() or args.engine != "local" or args.file or fmt not in ("csv", "jsonl"):
        return
    if _is_file(args.layout) or (args.hardware is not None and _is_file(args.hardware)):
        return
    parsed = answered_call(args, args.assignments)
    pairs = parsed["assignments"]
    if any(not _NAME.fullmatch(k) for k, _ in pairs):
        return
    counts, fixed = _split(pairs)
    if any(k not in DIMENSIONS or k in CONVENTIONS for k in counts):
        return  # a hardware field, an integer convention: they would fix the programs
    if any(k not in CONVENTIONS and k != SUPPORTS_OVERLAP.name for k, _ in fixed):
        return
    values = values_of(counts)
    if not _agree(counts, values):
        return
    layout = get_layout(args.layout, args.layer)
    if not layout.built_in:
        return  # a user's layout: its programs would outlive the file they came from
    given = {k: parse_values(k, t) for k, t in pairs}
    if any(not _same(values[k], given[k]) for k in counts):
        return
    g = grid(layout, args.phase, given, args.hardware)
    entry = _entry(g, values)
    if entry is None:
        return
    cache.write(KIND, sweep_key(parsed), json.dumps(entry), ".json")


def _same(mine: Sequence[int], engine: Sequence[int]) -> bool:
    """Whether the fast path read a count's values as the engine did."""
    from shardcost.codegen.sweep_rows import Range

    if isinstance(mine, Range) or isinstance(engine, Range):
        pick = ("start", "step", "length")
        return type(mine) is type(engine) and all(
            getattr(mine, a) == getattr(engine, a) for a in pick
        )
    return list(mine) == list(engine)


def _entry(g: Any, values: Mapping[str, Sequence[int]]) -> dict[str, Any] | None:
    """The entry of a sweep's grid: plain data and each variant's programs; None where
    they do not give the engine's rows."""
    from shardcost.cached_sweep import FORMAT, CachedRows, pattern_key
    from shardcost.codegen.runtime import preamble
    from shardcost.codegen.sweep import rule_sources

    paths = g.paths
    combos = [list(c) for c in g.combos]
    if json.loads(json.dumps(combos)) != combos or not all(
        type(v) in (bool, int, str) for c in combos for v in c
    ):
        return None  # a switch value JSON does not give back as it is
    catalog = {k: v for k, v in g.fixed.items() if k in paths.hardware_names and k not in values}
    if not all(type(v) is float for v in catalog.values()):
        return None
    variants = []
    for key in g.combos:
        plan = paths.plan(key)
        prog = plan.prog
        variants.append(
            {
                "picks": list(plan.picks),
                "inputs": plan.counts,
                "unread": list(plan.unread),
                "outputs": [name for name, _ in prog.outputs],
                "own": list(prog.extras),
                "programs": {},
                "rules": [list(r) for r in rule_sources(paths, key)],
            }
        )
    entry: dict[str, Any] = {
        "format": FORMAT,
        "timed": g.timed,
        "inputs": list(g.inputs),
        "counts": list(paths.names),
        "names": [list(g.switches), list(g.names[1]), list(g.names[2])],
        "combos": combos,
        "extras": list(g.extras),
        "catalog": catalog,
        "preamble": json.loads(json.dumps(preamble(paths.head))),
        "variants": variants,
    }
    rows = CachedRows(entry, values)
    # each way a chunk's inputs vary: many rows, or one (a last chunk of one row)
    spans = {(0, min(2, rows.per_combo)), (0, 1)}
    for combo, key in enumerate(g.combos):
        for lo, hi in spans:
            _, _, inputs = rows.chunk(combo, lo, hi)
            _, pattern = rows.pattern(key, inputs)
            blocked, _ = paths.blocked(key, pattern, False)
            variants[combo]["programs"][pattern_key(pattern)] = {
                "name": blocked.name,
                "source": blocked.source,
                "varies": list(blocked.varies),
                "scratch": [list(s) for s in blocked.scratch],
                "block": blocked.block,
            }
    text = json.dumps(entry)
    return entry if _replays(g, CachedRows(json.loads(text), values)) else None


def _replays(g: Any, rows: CachedRows) -> bool:
    """Whether the entry gives the engine's rows: the first ``REPLAY_ROWS`` of each
    combination, and its first alone, as CSV and JSON lines, dropped rows alike."""
    from shardcost.codegen.sweep_text import text

    if rows.columns != g.columns or rows.total != g.total:
        return False
    if rows.chunk_rows() != g.chunk_rows():
        return False
    keys = [json.dumps(c).encode() + b": " for c in g.columns]
    for combo in range(len(g.combos)):
        for hi in {min(REPLAY_ROWS, g.per_combo), 1}:
            want, got = g.evaluate(combo, 0, hi), _block(rows, combo, hi)
            if got is None:
                return False
            if want.rows != got.rows or want.dropped != got.dropped:
                return False
            for fmt in ("csv", "jsonl"):
                if text(want, fmt, keys) != text(got, fmt, keys):
                    return False
    return True


def _block(rows: CachedRows, combo: int, hi: int) -> Any:
    from shardcost.cached_sweep import Decline

    try:
        return rows.evaluate(combo, 0, hi)
    except Decline:
        return None  # a row the programs are not sure of: not checked, so not stored
