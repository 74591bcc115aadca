"""The ``shardcost`` command line.

Commands import what only they need (Jinja2, numpy, code generation) when they run, so
that ``shardcost metrics`` starts as fast as SymPy allows.

Exit status: 0 success; 1 a check found a mismatch; 2 bad input (one line on stderr,
never a traceback); 3 an internal error.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any, NoReturn

from shardcost import fastverify
from shardcost.codegen.printers import PRINTERS
from shardcost.errors import InputError, InternalError
from shardcost.files import check_target, printable, silence_stdout, write_atomically
from shardcost.formulas import (
    CATALOG,
    CONVENTIONS,
    KEYS,
    Phase,
    Result,
    all_layouts,
    evaluate,
    resolve_inputs,
)
from shardcost.formulas.cases import SPEC_CASES, check_all, spec_case
from shardcost.formulas.conventions import Conventions, convention
from shardcost.formulas.hardware import FIELDS as HARDWARE_FIELDS
from shardcost.formulas.inputs import applicable_params, check_keys, idle_degree
from shardcost.formulas.registry import Layout, get_layout, layers
from shardcost.reports.tables import (
    Table,
    comparison_text,
    comparison_title,
    result_text,
    value,
)
from shardcost.symbolic import DIMENSIONS

PROG = "shardcost"
_FORMATS = ("table", "json", "markdown")
_ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=.*", re.DOTALL)


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (and exit 2), not a usage dump."""

    def error(self, message: str) -> NoReturn:
        print(f"{PROG}: error: {printable(message)} (see '{self.prog} --help')", file=sys.stderr)
        raise SystemExit(2)


def keys_help() -> str:
    """The KEY=VALUE reference, from the notation table, conventions and hardware fields."""
    dims = Table(
        ("key", "symbol", "meaning", "unit", "default"),
        tuple(
            (d.name, d.short, d.meaning, d.unit, "" if d.default is None else str(d.default))
            for d in DIMENSIONS
        ),
        "lllll",
    )
    convs = Table(
        ("convention", "values", "default", "meaning"),
        tuple(
            (c.name, " | ".join(value(x) for x in c.choices), value(c.default), c.meaning)
            for c in CONVENTIONS
        ),
        "llll",
    )
    hw = Table(
        ("hardware field", "unit", "meaning"),
        tuple((f.name, f.unit, f.meaning) for f in HARDWARE_FIELDS),
        "lll",
    )
    return "\n\n".join(
        [
            "KEY=VALUE keys (dimensions are positive integers; give any two of hidden_size, "
            "num_heads, head_dim):",
            dims.render("table"),
            convs.render("table"),
            hw.render("table"),
        ]
    )


def _assignments(items: Sequence[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for text in items:
        if not _ASSIGNMENT.fullmatch(text):
            raise InputError(f"expected KEY=VALUE, got {text!r}")
        key, _, raw = text.partition("=")
        if key in out:
            raise InputError(f"{key} is given twice ({key}={out[key]!r} and {key}={raw!r})")
        out[key] = raw
    return out


def _emit(text: str) -> None:
    sys.stdout.write(text if text.endswith("\n") else text + "\n")


def _json(obj: Any) -> str:
    return json.dumps(obj, indent=2)


# ---------------------------------------------------------------- commands


def _cmd_compare(args: argparse.Namespace) -> int:
    from shardcost.formulas.comparison import chips_text, compare

    if args.plot and args.format != "markdown":
        raise InputError(
            "--plot draws a roofline into the Markdown report: add --format markdown -o FILE.md"
        )
    # LAYOUT and KEY=VALUE arguments may come in any order
    names = [x for x in args.layouts if "=" not in x]
    params = _assignments([*(x for x in args.layouts if "=" in x), *args.assignments])
    check_keys(params)
    chosen = _compared_layouts(names, args.layer)
    phases = list(Phase) if args.phase == "both" else [Phase(args.phase)]
    none_of = f"no {args.layer} layout"
    if names:
        none_of = f"none of the {args.layer} layouts {', '.join(names)}"
    used = {
        k
        for ph in phases
        for lay in chosen
        if ph in lay.phases
        for k in applicable_params(lay, ph, params)
    }
    unused = [k for k in params if k not in used and not idle_degree(k, params[k])]
    if unused:
        raise InputError(
            f"{', '.join(unused)} applies to {none_of} in {' or '.join(str(p) for p in phases)}"
        )
    tables = [
        compare(chosen, ph, params, chips=args.chips, layer=args.layer, hardware=args.hardware)
        for ph in phases
    ]
    for table in tables:
        if not table.results:
            where = f"on {chips_text(args.chips)} " if args.chips else ""
            why = "; ".join(f"{e.layout.name}: {e.reason}" for e in table.excluded)
            raise InputError(f"{none_of} runs {where}in {table.phase}" + (why and f" ({why})"))
    title = comparison_title(args.layer, names, args.chips)
    if args.format in ("json", "table"):
        from shardcost.numeric import store_compare

        pairs = [(k, v) for k, v in params.items()]
        store_compare(args, names, pairs, tables, title)  # the next run needs no SymPy
    if args.format == "json":
        _output(args, _json([entry for table in tables for entry in table.to_json()]))
        return 0
    merged: dict[str, Any] = {}
    for table in tables:
        for r in table.results:
            merged |= r.inputs.params()
    if args.chips:  # each layout's degrees are its own: only those given are common
        degrees = {d.name for lay in chosen for d in lay.degrees}
        merged = {k: v for k, v in merged.items() if k not in degrees or k in params}
    shown = "  ".join(f"{k}={value(merged[k])}" for k in KEYS if k in merged)
    if args.format == "markdown":
        from shardcost.reports.render import comparison_report

        plot = _plot(args, [r for table in tables for r in table.results])
        _output(args, comparison_report(tables, title, shown, plot=plot))
        return 0
    head = [f"shardcost: {title}", "", f"parameters: {shown}"]
    body = [comparison_text(table, args.format) for table in tables]
    _output(args, "\n".join([*head, "", ""]) + "\n".join(body))
    return 0


def _compared_layouts(names: Sequence[str], layer: str) -> list[Layout]:
    """The layouts named (each once), or every layout of ``layer``."""
    for name in names:
        if names.count(name) > 1:
            raise InputError(f"layout {name!r} is named twice")
    return [get_layout(name, layer) for name in names] or list(all_layouts(layer))


def _chip_budget(text: str) -> int:
    """--chips N: a positive whole number."""
    if not re.fullmatch(r"[0-9]+", text) or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive whole number")
    return int(text)


def _output(args: argparse.Namespace, text: str) -> None:
    """Print ``text``, or write it to ``-o FILE`` when given: into a temporary file beside
    it, renamed over it only once it is whole (a failure leaves what was there)."""
    target = getattr(args, "output", None)
    if target is None:
        _emit(text)
        return
    _check_target(args, target)
    try:
        write_atomically(target, text if text.endswith("\n") else text + "\n")
    except InputError:
        picture = getattr(args, "_picture", None)  # drawn for this report: not left behind
        if picture is not None:
            picture.unlink(missing_ok=True)
        raise
    print(f"wrote {printable(target)}", file=sys.stderr)


def _inputs_of(args: argparse.Namespace) -> list[Path]:
    """The files the command reads (a config, measurements, layout and hardware files)."""
    found: list[Path] = []
    for name in ("config", "measurements", "layout_file", "hardware"):
        value = getattr(args, name, None)
        if isinstance(value, Path):
            found.append(value)
        elif isinstance(value, str) and value.endswith(".toml"):
            found.append(Path(value))
    found += [p for p in getattr(args, "file", None) or [] if isinstance(p, Path)]
    return found


def _check_target(args: argparse.Namespace, target: Path) -> None:
    """Refuse an -o that names one of the command's inputs, or a folder that is not there
    (``files.check_target``)."""
    check_target(target, _inputs_of(args))


def _evaluate_one(args: argparse.Namespace) -> Result:
    """The one layout of ``metrics`` and ``report``, evaluated at the command's KEY=VALUEs."""
    params = _assignments(args.assignments)
    inputs = resolve_inputs(
        args.layout, args.phase, layer=args.layer, hardware=args.hardware, params=params
    )
    return evaluate(inputs)


def _output_result(args: argparse.Namespace, result: Any, text: Callable[[Any, str], str]) -> int:
    """``result`` as JSON (its ``to_dict()``) or as ``text(result, format)``, via ``_output``."""
    if args.format == "json":
        _output(args, _json(result.to_dict()))
    else:
        _output(args, text(result, args.format))
    return 0


def _plot(args: argparse.Namespace, results: list[Result]) -> str | None:
    """With --plot, write the roofline SVG beside -o FILE.md; the link to put in it."""
    if not getattr(args, "plot", False):
        return None
    if args.output is None:
        raise InputError("--plot writes an SVG beside the Markdown: give -o FILE.md as well")
    from shardcost.reports.roofline import write_roofline

    _check_target(args, args.output)  # before drawing: a report that cannot be written
    svg = args.output.with_name(args.output.stem + ".roofline.svg")  # leaves no picture
    write_roofline(results, svg)
    args._picture = svg
    print(f"wrote {printable(svg)}", file=sys.stderr)
    return svg.name


def _cmd_report(args: argparse.Namespace) -> int:
    from shardcost.reports.render import derivation_report

    result = _evaluate_one(args)
    _output(args, derivation_report(result, plot=_plot(args, [result])))
    return 0


def _cmd_verify(args: argparse.Namespace) -> int:
    from shardcost.formulas.user import read_layout
    from shardcost.formulas.verification import verify
    from shardcost.reports.verdicts import verification_json, verification_text

    # LAYOUT and CONVENTION=VALUE arguments may come in any order
    names = [x for x in args.layouts if "=" not in x]
    assigned = [*(x for x in args.layouts if "=" in x), *args.assignments]
    params = _assignments(assigned)
    start = time.perf_counter()
    chosen = [get_layout(name, args.layer or "attention") for name in names]
    # built, not registered: a layout that cannot be fails its claims with counterexamples
    chosen += [read_layout(path) for path in args.file]
    results = verify(
        chosen or None,
        phases=None if args.phase == "both" else [args.phase],
        conventions=params,
        every_convention=args.all_conventions,
        layer=args.layer,
    )
    seconds = time.perf_counter() - start
    if args.format == "json":
        text = _json(verification_json(results))
    else:
        text = verification_text(results, seconds)
    status = 0 if all(r.ok for r in results) else 1
    out = text if text.endswith("\n") else text + "\n"
    request = fastverify.Request(
        tuple(names),
        tuple(assigned),
        tuple(str(path) for path in args.file),
        args.phase,
        args.layer,
        args.all_conventions,
        args.format,
    )
    fastverify.remember(request, out, status)  # the same command again needs no SymPy
    _emit(out)
    return status


def _cmd_sweep(args: argparse.Namespace) -> int:
    import warnings

    from shardcost.codegen.sweep import WideCountWarning, output_format, parse_values, sweep
    from shardcost.codegen.sweep_rows import summary

    given: dict[str, Sequence[Any]] = {}
    for item in args.assignments:
        if not _ASSIGNMENT.fullmatch(item):
            raise InputError(f"expected KEY=VALUES, got {item!r}")
        key, _, text = item.partition("=")
        if key in given:
            raise InputError(f"{key} is given twice")
        given[key] = parse_values(key, text)
    layout = get_layout(args.layout, args.layer)
    target = args.output
    dask = args.engine == "dask"
    if args.scheduler is not None and not dask:
        raise InputError("--scheduler is for --engine dask")
    if dask and (target is None or args.format not in (None, "parquet")):
        raise InputError("the dask engine writes partitioned Parquet: give -o DIR, no --format")
    fmt = "parquet" if dask else output_format(args.format, target)
    options = {"hardware_name": args.hardware, "progress": args.progress}
    try:
        with (
            nullcontext(target or sys.stdout) as out,
            warnings.catch_warnings(record=True) as caught,
        ):
            warnings.simplefilter("always", WideCountWarning)
            if dask:
                from shardcost.codegen.distributed import sweep_dask

                result = sweep_dask(
                    layout, args.phase, given, out, **options, scheduler=args.scheduler
                )
            else:
                result = sweep(layout, args.phase, given, out, fmt=fmt, **options)
    except BrokenPipeError:  # the reader went away (`| head`): stop quietly, as Unix tools do
        silence_stdout()
        return 0
    except OSError as exc:
        raise InputError(f"cannot write {target}: {exc.strerror or exc}") from None
    for warning in caught:
        print(f"{PROG}: warning: {warning.message}", file=sys.stderr)
    print(summary(result, target), file=sys.stderr)
    if not dask:
        from shardcost.numeric_sweep import store_sweep

        store_sweep(args, fmt)  # the next run needs no SymPy
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from shardcost.codegen.export import export

    params = _assignments(args.assignments)
    conventions = Conventions(**{k: convention(k).parse(v) for k, v in params.items()})
    languages = tuple(PRINTERS) if args.lang == "all" else (args.lang,)
    for language in languages:
        try:
            written = export(language, args.output, conventions=conventions)
        except OSError as exc:
            raise InputError(f"cannot write into {args.output}: {exc.strerror}") from None
        _emit(f"wrote {args.output / language}: {len(written)} files, run.sh LAYOUT PHASE KEY=...")
    return 0


def _cmd_spec_render(args: argparse.Namespace) -> int:
    from shardcost.reports.render import render_specs

    try:
        written = render_specs(args.out_dir)
    except OSError as exc:
        raise InputError(f"cannot write into {args.out_dir}: {exc.strerror}") from None
    _emit(f"wrote {len(written)} documents to {args.out_dir}")
    return 0


def _cmd_metrics(args: argparse.Namespace) -> int:
    result = _evaluate_one(args)
    if not getattr(args, "file", None):
        from shardcost.numeric import store_metrics

        store_metrics(args.assignments, args, result)  # the next run needs no SymPy
    if args.format == "json":
        _emit(_json(result.to_dict()))
        for note in result.notes:
            print(f"note: {note}", file=sys.stderr)
    else:
        _emit(result_text(result, args.format))
    return 0


def _workload(args: argparse.Namespace) -> Any:
    from shardcost.formulas.plan import Workload

    return Workload(args.prompt, args.output_tokens, args.concurrency)


def _cmd_model(args: argparse.Namespace) -> int:
    from shardcost.formulas.model import model_metrics
    from shardcost.reports.tables import model_text

    if args.plan is not None:
        return _model_plan(args)
    from shardcost.numeric_model import config_digest, store_model

    digest = config_digest(str(args.config))  # before the engine reads it: an edit misses
    result = model_metrics(
        args.config,
        args.phase,
        layout=args.layout,
        hardware=args.hardware,
        params=_assignments(args.assignments),
    )
    status = _output_result(args, result, model_text)
    if args.output is None:
        store_model(args.assignments, args, result, digest)  # the next run needs no SymPy
    return status


def _model_plan(args: argparse.Namespace) -> int:
    """``model --plan``: one plan of the model, its memory per chip and serving figures."""
    from shardcost.formulas.plan import engine_model, parse_plan, plan_model, reserve_fraction
    from shardcost.numeric_model import config_digest
    from shardcost.numeric_plan import storable, store_plan
    from shardcost.reports.plans import planned_text

    if args.hardware is None:
        raise InputError("--plan needs --hardware NAME: memory and times are per chip")
    if args.layout != "single":
        raise InputError("--plan sets every layer's layout; leave out --layout")
    # the plan's, the workload's and the reserve's errors first, then the config's
    plan, workload, reserve = parse_plan(args.plan), _workload(args), reserve_fraction(args.reserve)
    digest = config_digest(str(args.config))  # before the engine reads it: an edit misses
    model = engine_model(args.config, args.hardware, _assignments(args.assignments))
    model.keep_results = storable(args)
    planned = plan_model(args.config, plan, args.hardware, workload, reserve=reserve, model=model)
    status = _output_result(args, planned, planned_text)
    store_plan(args, model, planned, digest)  # the next run needs no SymPy
    return status


def _cmd_plan(args: argparse.Namespace) -> int:
    from shardcost.formulas.plan import Limits, engine_model, reserve_fraction, search
    from shardcost.numeric_model import config_digest
    from shardcost.numeric_plan import storable, store_plan
    from shardcost.reports.plans import search_text, write_front_plot

    if args.plot and (args.output is None or args.format != "markdown"):
        raise InputError(
            "--plot writes an SVG beside the report: give --format markdown -o FILE.md"
        )
    # the workload's and the reserve's errors first, then the chips', then the config's
    workload, reserve = _workload(args), reserve_fraction(args.reserve)
    digest = config_digest(str(args.config))  # before the engine reads it: an edit misses
    model = None
    if 1 <= args.chips <= 65536:  # else search says what is wrong, before reading anything
        model = engine_model(args.config, args.hardware, _assignments(args.assignments))
        model.keep_results = storable(args)
    found = search(
        args.config,
        args.chips,
        args.hardware,
        workload,
        limits=Limits(args.max_tpot_ms, args.max_ttft_ms, args.min_context),
        reserve=reserve,
        params=_assignments(args.assignments),
        interleaved=args.interleaved,
        model=model,
    )
    print(f"{found.tried} plans evaluated in {found.seconds:.2f} s", file=sys.stderr)
    if args.format == "json":
        _output(args, _json(found.to_dict()))
        store_plan(args, model, found, digest)  # the next run needs no SymPy
        return 0
    link = None
    if args.plot and found.results:
        svg = args.output.with_name(args.output.stem + ".plans.svg")
        write_front_plot(found, svg)
        print(f"wrote {svg}", file=sys.stderr)
        link = svg.name
    _output(args, search_text(found, args.format, every=args.all, plot=link))
    store_plan(args, model, found, digest)
    return 0


def _cmd_calibrate(args: argparse.Namespace) -> int:
    from shardcost.formulas.calibration import calibrate, hardware_toml
    from shardcost.reports.validation import calibration_text, write_calibration_plot

    if args.output.suffix != ".toml":
        raise InputError(f"-o {args.output}: the fitted hardware is a .toml file")
    if args.plot is not None and args.plot.suffix != ".svg":
        raise InputError(f"--plot {args.plot}: the plot is an .svg file")
    fitted = calibrate(
        args.measurements,
        args.hardware,
        folds=args.folds,
        hold_out_half=args.hold_out_half,
        name=args.name,
    )
    _output(args, hardware_toml(fitted.fitted))
    if args.plot is not None:
        write_calibration_plot(fitted, args.plot)
        print(f"wrote {args.plot}", file=sys.stderr)
    if args.format == "json":
        _emit(_json(fitted.to_dict() | {"written": str(args.output)}))
    else:
        _emit(calibration_text(fitted, args.format, written=str(args.output)))
    return 0


def _cmd_validate(args: argparse.Namespace) -> int:
    from shardcost.formulas.measurements import validate
    from shardcost.reports.validation import validation_text

    return _output_result(args, validate(args.measurements, args.hardware), validation_text)


def _cmd_kv_tier(args: argparse.Namespace) -> int:
    from shardcost.formulas.kv_tier import kv_tier
    from shardcost.numeric_kv import store_kv
    from shardcost.numeric_model import config_digest
    from shardcost.reports.tables import kv_tier_text

    digest = config_digest(str(args.config))  # before the engine reads it: an edit misses
    tier = kv_tier(
        args.config,
        hardware=args.hardware,
        host_memory=args.host_memory,
        layout=args.layout,
        params=_assignments(args.assignments),
    )
    status = _output_result(args, tier, kv_tier_text)
    store_kv(args, tier, digest)  # the next run with other lengths needs no SymPy
    return status


def _cmd_crossover(args: argparse.Namespace) -> int:
    from shardcost.formulas.crossover import crossover
    from shardcost.reports.crossover import crossover_text

    # A, B and KEY=VALUE arguments may come in any order
    sides = [x for x in args.sides if "=" not in x]
    params = _assignments([*(x for x in args.sides if "=" in x), *args.assignments])
    if args.ridge is not None and sides:
        raise InputError(f"--ridge {args.ridge} is one layout's; drop {' '.join(sides)}")
    if args.ridge is None and len(sides) != 2:
        raise InputError(
            f"crossover compares two sides (A B: layouts, or LAYOUT:STEP), or one layout "
            f"with --ridge LAYOUT; got {len(sides)}: {' '.join(sides) or 'none'}"
        )
    a, b = (args.ridge, None) if args.ridge is not None else sides
    result = crossover(
        a,
        b,
        metric=args.metric,
        solve_for=args.solve_for,
        layer=args.layer,
        phase_name=args.phase,
        hardware=args.hardware,
        params=params,
    )
    return _output_result(args, result, crossover_text)


def _cmd_layouts(args: argparse.Namespace) -> int:
    chosen = all_layouts(args.layer)
    if args.format == "json":
        _emit(
            _json(
                [
                    {
                        "name": lay.name,
                        "layer": lay.layer,
                        "summary": lay.summary,
                        "degrees": [d.name for d in lay.degrees],
                        "conventions": list(lay.conventions),
                    }
                    for lay in chosen
                ]
            )
        )
        return 0
    rows = tuple(
        (lay.name, lay.layer, " × ".join(d.name for d in lay.degrees) or "1", lay.summary)
        for lay in chosen
    )
    _emit(Table(("layout", "layer", "chips", "summary"), rows, "llll").render(args.format))
    return 0


def _cmd_hardware(args: argparse.Namespace) -> int:
    from shardcost.formulas.hardware import load_hardware

    entries = load_hardware(args.file) if args.file else tuple(CATALOG.values())
    if args.format == "json":
        _emit(
            _json(
                [
                    {
                        "name": hw.name,
                        "description": hw.description,
                        **{
                            k: (v if isinstance(v, bool) or v is None else float(v))
                            for k, v in hw.fields().items()
                        },
                        "source": hw.source,
                    }
                    for hw in entries
                ]
            )
        )
        return 0

    def number(v: object) -> str:
        return "—" if v is None else f"{float(v):g}"  # type: ignore[arg-type]

    rows = tuple(
        (
            hw.name,
            number(hw.peak_tflops),
            number(hw.peak_tflops_fp8),
            number(hw.memory_bandwidth_gb_s),
            number(None if hw.capacity_bytes is None else hw.capacity_bytes / 2**30),
            number(hw.interconnect_bandwidth_gb_s),
            number(hw.host_link_bandwidth_gb_s),
            hw.description,
        )
        for hw in entries
    )
    headers = (
        "name",
        "BF16 TFLOP/s",
        "FP8 TFLOP/s",
        "HBM GB/s",
        "HBM GiB",
        "link GB/s",
        "host GB/s",
        "description",
    )
    _emit(Table(headers, rows, "lrrrrrrl").render(args.format))
    if args.format == "table":
        _emit(
            "\ndense figures; decimal units but HBM capacity (binary, as vendors mean it); "
            "link and host (PCIe) bandwidth per direction. "
            "Sources: shardcost hardware --format json"
        )
    return 0


def _cmd_spec_list(args: argparse.Namespace) -> int:
    if args.format == "json":
        _emit(
            _json(
                [
                    {
                        "name": c.name,
                        "seed": c.seed,
                        "title": c.title,
                        "layout": c.layout,
                        "phase": c.phase,
                        "params": dict(c.params),
                        "hardware": c.hardware,
                    }
                    for c in SPEC_CASES
                ]
            )
        )
        return 0
    rows = tuple((c.name, c.layout, c.phase, c.seed, c.title) for c in SPEC_CASES)
    _emit(Table(("case", "layout", "phase", "seed", "title"), rows, "lllll").render("table"))
    return 0


def _cmd_spec_check(args: argparse.Namespace) -> int:
    cases = tuple(spec_case(name) for name in args.cases) or None
    checks = check_all(cases)
    rows = tuple(
        (
            c.case.name,
            c.case.layout,
            c.case.phase,
            str(c.checked),
            "ok" if c.ok else f"{len(c.mismatches)} differ",
        )
        for c in checks
    )
    _emit(Table(("case", "layout", "phase", "values", "result"), rows, "lllrl").render("table"))
    values = sum(c.checked for c in checks)
    bad = [m for c in checks for m in c.mismatches]
    if not bad:
        _emit(f"\n{len(checks)} cases, {values} values: every one matches its seed")
        return 0
    mismatch_rows = tuple((m.case, m.quantity, str(m.expected), str(m.got)) for m in bad)
    _emit(
        "\nmismatches:\n"
        + Table(("case", "quantity", "seed", "model"), mismatch_rows, "llrr").render("table")
    )
    _emit(f"\n{len(bad)} of {values} values differ from the seeds")
    return 1


# ---------------------------------------------------------------- parser


def _add_output_file(p: argparse.ArgumentParser) -> None:
    p.add_argument("-o", "--output", type=Path, metavar="FILE", help="write to FILE, not stdout")


def _positive_int(raw: str) -> int:
    if not raw.isdigit() or len(raw) > 9 or int(raw) < 1:
        raise argparse.ArgumentTypeError(f"{raw!r} is not a whole number of at least 1")
    return int(raw)


def _positive_float(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 < value < 1e12:
        raise argparse.ArgumentTypeError(f"{raw!r} is not a positive number")
    return value


def _add_workload_options(p: argparse.ArgumentParser) -> None:
    """The serving workload of a plan, and the runtime reserve."""
    p.add_argument(
        "--prompt",
        type=_positive_int,
        default=2048,
        metavar="TOKENS",
        help="prompt length per request (default: %(default)s)",
    )
    p.add_argument(
        "--output-tokens",
        type=_positive_int,
        default=256,
        metavar="TOKENS",
        help="output tokens per request (default: %(default)s)",
    )
    p.add_argument(
        "--concurrency",
        type=_positive_int,
        default=1,
        metavar="N",
        help="requests served at once, over every replica (default: %(default)s)",
    )
    p.add_argument(
        "--reserve",
        default="0.1",
        metavar="FRACTION",
        help="memory kept for the runtime, of each chip's capacity (default: %(default)s)",
    )


def _add_output_options(p: argparse.ArgumentParser) -> None:
    _add_output_file(p)
    p.add_argument(
        "--plot",
        action="store_true",
        help="also write a roofline SVG beside FILE and link it "
        "(needs hardware, and pip install 'shardcost[plots]')",
    )


def _add_phase(p: argparse.ArgumentParser, *, both: bool = False) -> None:
    """--phase prefill|decode (or both, the default where both are shown)."""
    p.add_argument(
        "--phase",
        choices=[*(ph.value for ph in Phase), *(["both"] if both else [])],
        default="both" if both else "prefill",
        help="inference phase (default: %(default)s)",
    )


def _add_user_layouts(
    p: argparse.ArgumentParser,
    help: str = "load a layout of your own (repeatable); LAYOUT may also be the .toml file",
) -> None:
    """--file LAYOUT.toml (repeatable): a layout of one's own, loaded before the command
    runs and then named like any other (a LAYOUT argument may also be the file itself)."""
    p.add_argument(
        "--file", action="append", default=[], type=Path, metavar="LAYOUT.toml", help=help
    )


def _add_layout_options(
    p: argparse.ArgumentParser, *, both: bool = False, formats: bool = True
) -> None:
    _add_phase(p, both=both)
    p.add_argument(
        "--layer", default="attention", help=f"layer: {' | '.join(layers())} (default: %(default)s)"
    )
    _add_user_layouts(p)
    p.add_argument(
        "--hardware",
        metavar="NAME",
        help=f"hardware for timing: {' | '.join(CATALOG)} (fields may override it)",
    )
    if formats:
        p.add_argument(
            "--format",
            choices=_FORMATS,
            default="table",
            help="output format (default: %(default)s)",
        )
    p.add_argument(
        "assignments",
        nargs="*",
        metavar="KEY=VALUE",
        help="a dimension, convention or hardware field (see below)",
    )


def _user_file(name: object) -> bool:
    return isinstance(name, str) and name.endswith(".toml")


def _load_user_layouts(args: argparse.Namespace) -> None:
    """Register every --file layout, and any LAYOUT given as a .toml file (then named by
    the layout it holds, its layer taken from the file)."""
    from shardcost.formulas.user import reload_layout as load_layout

    loaded = [load_layout(path) for path in getattr(args, "file", None) or []]
    if _user_file(getattr(args, "layout", None)):
        lay = load_layout(Path(args.layout))
        args.layout, args.layer = lay.name, lay.layer
        loaded.append(lay)
    for field in ("layouts", "sides"):
        names = getattr(args, field, None)
        if names and any(_user_file(n) for n in names):
            found = [load_layout(Path(n)) if _user_file(n) else n for n in names]
            setattr(args, field, [n if isinstance(n, str) else n.name for n in found])
            loaded += [n for n in found if not isinstance(n, str)]
    layers_ = {lay.layer for lay in loaded}
    if len(layers_) == 1 and getattr(args, "layer", "attention") in (None, "attention"):
        args.layer = layers_.pop()  # a file's own layer, unless --layer says otherwise


def _version() -> str:
    import shardcost

    return shardcost.__version__


def _parser() -> _Parser:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = _Parser(
        prog=PROG,
        description="Symbolic cost of transformer layers under parallel layouts. "
        "With no command: every layout side by side for the default configuration.",
        formatter_class=formatter,
        epilog=keys_help(),
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {_version()}")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")

    def keyed(name: str, summary: str, **kwargs: Any) -> argparse.ArgumentParser:
        """A command that takes KEY=VALUE: the key reference is its epilog unless given."""
        if "epilog" not in kwargs:
            kwargs["epilog"] = keys_help()
        return sub.add_parser(name, help=summary, formatter_class=formatter, **kwargs)

    p = keyed(
        "compare",
        "every layout side by side (the default command)",
        description="Layouts side by side, each at its own parallel degrees (ranked only "
        "among layouts on the same number of chips), or all on N chips with --chips N.",
    )
    p.add_argument(
        "layouts", nargs="*", metavar="LAYOUT", help="only these layouts (default: every one)"
    )
    p.add_argument(
        "--chips",
        type=_chip_budget,
        metavar="N",
        help="put every layout on N chips: its parallel degrees set to fill them (a layout "
        "of several degrees at each split giving every degree 2 or more); those that cannot "
        "run on N are listed with the reason",
    )
    _add_layout_options(p, both=True)
    _add_output_options(p)
    p.set_defaults(run=_cmd_compare)

    p = keyed("report", "a Markdown derivation of one layout, step by step")
    p.add_argument("layout", help="a layout name (see 'shardcost layouts')")
    _add_layout_options(p, formats=False)
    _add_output_options(p)
    p.set_defaults(run=_cmd_report)

    p = sub.add_parser(
        "verify",
        help="prove layouts' invariants; exit 1 when one fails",
        description="Prove each layout's invariants (conservation against its reference, "
        "declared replication and communication, degree 1, non-negativity, monotonicity) "
        "or check them exactly at points where SymPy cannot decide.",
    )
    p.add_argument("layouts", nargs="*", metavar="LAYOUT", help="built-in layouts (default: all)")
    _add_user_layouts(p, help="a user layout to load and verify (repeatable)")
    _add_phase(p, both=True)
    p.add_argument("--layer", default=None, help="only this layer's layouts (default: all)")
    p.add_argument(
        "--all-conventions",
        action="store_true",
        help="verify under every combination of the conventions that apply",
    )
    p.add_argument("--format", choices=("table", "json"), default="table")
    p.add_argument("assignments", nargs="*", metavar="CONVENTION=VALUE", help=argparse.SUPPRESS)
    p.set_defaults(run=_cmd_verify)

    p = keyed(
        "sweep",
        "evaluate the product of parameter lists; CSV, JSON lines or Parquet",
        epilog="VALUES: a list (seq_len=1024,2048), an inclusive range (seq_len=1024:8192:1024) "
        "or a geometric range (batch_size=1:64:*2).\n\n"
        "Parquet (-o FILE.parquet, or --engine dask -o DIR) needs pyarrow: "
        "pip install 'shardcost[parquet]' or 'shardcost[dask]'.\n\n" + keys_help(),
    )
    p.add_argument("layout", help="a layout name (see 'shardcost layouts') or LAYOUT.toml")
    _add_phase(p)
    p.add_argument("--layer", default="attention")
    _add_user_layouts(p)
    p.add_argument("--hardware", metavar="NAME", help="adds the four timings")
    p.add_argument(
        "--format",
        choices=("csv", "jsonl", "parquet"),
        default=None,
        help="default: by the -o file's suffix (.parquet, .jsonl), else csv",
    )
    _add_output_file(p)
    p.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="a progress bar on stderr (default: when stderr is a terminal)",
    )
    p.add_argument(
        "--engine",
        choices=("local", "dask"),
        default="local",
        help="dask: evaluate partitions on a Dask cluster and write partitioned Parquet "
        "into -o DIR",
    )
    p.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="the Dask scheduler to use (default: a local cluster in this process)",
    )
    p.add_argument("assignments", nargs="*", metavar="KEY=VALUES")
    p.set_defaults(run=_cmd_sweep)

    p = sub.add_parser(
        "export",
        help="write the metrics of every layout as Python, C, Rust, JavaScript or Go",
    )
    p.add_argument("--lang", required=True, choices=(*PRINTERS, "all"))
    p.add_argument(
        "-o",
        "--output",
        type=Path,
        default=Path("shardcost-export"),
        metavar="DIR",
        help="DIR/<lang>/ receives the code (default: %(default)s)",
    )
    p.add_argument("assignments", nargs="*", metavar="CONVENTION=VALUE")
    p.set_defaults(run=_cmd_export)

    p = keyed("metrics", "the nine metrics (and timing) of one layout")
    p.add_argument("layout", help="a layout name (see 'shardcost layouts') or LAYOUT.toml")
    _add_layout_options(p)
    p.set_defaults(run=_cmd_metrics)

    p = keyed(
        "model",
        "a whole model from a local Hugging Face config.json",
        description="Parameters (exact), per-component and total metrics, memory and (with "
        "--hardware) timing of a model of any of the 23 families (Llama, Mistral, Mixtral, "
        "Qwen, DeepSeek, gpt-oss, Gemma ...). The config is read from disk; nothing is "
        "downloaded.",
    )
    p.add_argument("config", type=Path, metavar="CONFIG.json", help="the model's config.json")
    _add_phase(p)
    p.add_argument(
        "--layout",
        default="single",
        help="the attention layout; the FFN and vocabulary layers follow it "
        f"({' | '.join(lay.name for lay in all_layouts('attention'))}; default: %(default)s)",
    )
    p.add_argument(
        "--hardware",
        metavar="NAME",
        help=f"hardware for timing and capacity: {' | '.join(CATALOG)} or FILE.toml",
    )
    p.add_argument(
        "--plan",
        metavar="PLAN",
        help="place the model: tp=8,pp=2,ep=8 (also cp, dp, cp_layout, schedule, "
        "microbatches, chunks); prints memory per chip and serving figures for the workload",
    )
    _add_workload_options(p)
    p.add_argument("--format", choices=_FORMATS, default="table")
    _add_output_file(p)
    p.add_argument("assignments", nargs="*", metavar="KEY=VALUE")
    p.set_defaults(run=_cmd_model)

    p = keyed(
        "plan",
        "every placement of a model on N chips: which fit, the Pareto front, the best",
        description="Enumerate every plan (tensor, context, expert, pipeline and data "
        "parallel degrees whose product is --chips; each context-parallel layout), drop those "
        "that cannot run the model or do not fit (saying how many and why), evaluate the "
        "rest through the compiled layers, and print the Pareto front of tokens/s per chip "
        "against TPOT and the best plan per objective, each with its bottleneck.",
    )
    p.add_argument("config", type=Path, metavar="CONFIG.json", help="the model's config.json")
    p.add_argument("--chips", type=_positive_int, required=True, metavar="N", help="chips to fill")
    p.add_argument(
        "--hardware",
        metavar="NAME",
        required=True,
        help=f"{' | '.join(CATALOG)} or FILE.toml (KEY=VALUE overrides a field)",
    )
    _add_workload_options(p)
    p.add_argument("--max-tpot-ms", type=_positive_float, metavar="MS", help="TPOT limit")
    p.add_argument("--max-ttft-ms", type=_positive_float, metavar="MS", help="TTFT limit")
    p.add_argument(
        "--min-context",
        type=_positive_int,
        default=0,
        metavar="TOKENS",
        help="every request's KV cache must fit at this context length",
    )
    p.add_argument(
        "--interleaved",
        action="store_true",
        help="also try the interleaved pipeline schedule (2 chunks per stage)",
    )
    p.add_argument("--all", action="store_true", help="also list every plan that fits")
    p.add_argument("--format", choices=_FORMATS, default="table")
    _add_output_file(p)
    p.add_argument(
        "--plot",
        action="store_true",
        help="with --format markdown -o FILE.md: an SVG of the plans and their front beside it",
    )
    p.add_argument("assignments", nargs="*", metavar="KEY=VALUE")
    p.set_defaults(run=_cmd_plan)

    p = sub.add_parser(
        "calibrate",
        help="fit the timing model to measured times; write the fitted hardware TOML",
        formatter_class=formatter,
        description="Fit, per kernel class (gemm and attention layers, pinned and pageable "
        "host copies), an achieved compute fraction, bandwidth fraction and fixed latency to "
        "a measurements CSV (see validate), write the base hardware with the fitted figures "
        "as FITTED.toml (usable as --hardware FITTED.toml everywhere), and print the "
        "coefficients and the relative errors before, in the fit and under k-fold "
        "cross-validation.",
    )
    p.add_argument("measurements", type=Path, metavar="MEASUREMENTS.csv")
    p.add_argument(
        "--hardware",
        metavar="NAME",
        required=True,
        help=f"the base: {' | '.join(CATALOG)} or FILE.toml",
    )
    p.add_argument("-o", "--output", type=Path, required=True, metavar="FITTED.toml")
    p.add_argument(
        "--folds",
        type=_positive_int,
        default=5,
        metavar="K",
        help="cross-validation folds (default: %(default)s)",
    )
    p.add_argument(
        "--hold-out-half",
        action="store_true",
        help="fit on every other row of each class, report the error on the rest",
    )
    p.add_argument("--name", metavar="NAME", help="the fitted entry's name (default: BASE-fitted)")
    p.add_argument(
        "--plot", type=Path, metavar="FILE.svg", help="predicted against measured, before and after"
    )
    p.add_argument("--format", choices=_FORMATS, default="table")
    p.set_defaults(run=_cmd_calibrate)

    p = sub.add_parser(
        "validate",
        help="measured times against the model's predictions: per row, per class, worst",
        formatter_class=formatter,
        description="Each row of a measurements CSV (columns layer, layout, phase, any "
        "KEY, measured_us; layer=host_copy with bytes and host_memory for a host-to-device "
        "copy) predicted on the hardware and compared: the error per row, the mean and "
        "largest absolute error per kernel class and overall, and the worst rows.",
    )
    p.add_argument("measurements", type=Path, metavar="MEASUREMENTS.csv")
    p.add_argument(
        "--hardware",
        metavar="NAME",
        required=True,
        help=f"{' | '.join(CATALOG)} or FILE.toml (a fitted one, for instance)",
    )
    p.add_argument("--format", choices=_FORMATS, default="table")
    _add_output_file(p)
    p.set_defaults(run=_cmd_validate)

    p = keyed(
        "kv-tier",
        "bring each request's KV cache from host memory: copy time against decode",
        description="For each request of a decode batch (past_seq_len=4096,64,...): the "
        "time to copy its KV cache (all layers, and one layer) from host memory over the "
        "host link, against decode attention over the same cache, and the decode layers, "
        "decode steps or prefill tokens that would hide the copy.",
    )
    p.add_argument("config", type=Path, metavar="CONFIG.json", help="the model's config.json")
    p.add_argument(
        "--hardware",
        metavar="NAME",
        required=True,
        help=f"{' | '.join(CATALOG)} or FILE.toml; host_link_bandwidth_gb_s=... overrides",
    )
    p.add_argument(
        "--host-memory",
        choices=("pinned", "pageable"),
        default="pinned",
        help="where the cache waits: pinned (page-locked) or pageable host memory "
        "(default: %(default)s)",
    )
    p.add_argument(
        "--layout",
        default="single",
        help=f"the attention layout ({' | '.join(lay.name for lay in all_layouts('attention'))}; "
        "default: %(default)s)",
    )
    p.add_argument("--format", choices=_FORMATS, default="table")
    _add_output_file(p)
    p.add_argument("assignments", nargs="*", metavar="KEY=VALUE")
    p.set_defaults(run=_cmd_kv_tier)

    p = keyed(
        "crossover",
        "the value of one dimension at which two layouts (or steps) tie, in closed form",
        description="Solve A − B = 0 for one dimension (--solve-for KEY), every other at its "
        "value or default: the root in the remaining symbols, at the values given and as the "
        "first whole value at which the order flips, checked there by the library's own "
        "evaluation. Uneven splits are taken as even; max, min and piecewise terms are solved "
        "branch by branch, each root kept in the regime where it lies (both compute-bound ...).",
    )
    p.add_argument(
        "sides",
        nargs="*",
        metavar="A B",
        help="two layouts of the layer, or a layout's derivation steps: LAYOUT:STEP[+STEP...] "
        "(single:scores, single:q_proj+k_proj+v_proj+o_proj)",
    )
    p.add_argument(
        "--metric",
        metavar="M",
        help="what a side without :STEP compares: a metric (flops_per_chip ... "
        "communication_bytes) or, with --hardware, a time (compute_time_ms, load_time_ms, "
        "communication_time_ms, wall_clock_time_ms)",
    )
    p.add_argument("--solve-for", required=True, metavar="KEY", help="the dimension to solve for")
    p.add_argument(
        "--ridge",
        metavar="LAYOUT",
        help="instead of A B: where LAYOUT's compute time equals its load time (needs --hardware)",
    )
    _add_layout_options(p)
    p.set_defaults(run=_cmd_crossover)

    p = sub.add_parser("layouts", help="the registered layouts")
    p.add_argument("--layer", default=None, help="only this layer's layouts")
    p.add_argument("--format", choices=_FORMATS, default="table")
    p.set_defaults(run=_cmd_layouts)

    p = sub.add_parser("hardware", help="the hardware catalog, with each figure's source")
    p.add_argument("--format", choices=_FORMATS, default="table")
    p.add_argument(
        "--file",
        type=Path,
        metavar="FILE.toml",
        help="check and list the accelerators in a file of your own instead",
    )
    p.set_defaults(run=_cmd_hardware)

    p = sub.add_parser("spec", help="the seed documents' test cases")
    spec = p.add_subparsers(title="spec commands", metavar="SPEC_COMMAND", required=True)
    q = spec.add_parser("list", help="list the spec cases")
    q.add_argument("--format", choices=("table", "json"), default="table")
    q.set_defaults(run=_cmd_spec_list)
    q = spec.add_parser("render", help="write one Markdown document per case, and an index")
    q.add_argument("out_dir", type=Path, metavar="OUT_DIR", help="where to write them")
    q.set_defaults(run=_cmd_spec_render)
    q = spec.add_parser("check", help="recompute every case; exit 1 on any mismatch")
    q.add_argument("cases", nargs="*", metavar="CASE", help="only these cases")
    q.set_defaults(run=_cmd_spec_check)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if (cached := fastverify.try_cached(argv)) is not None:
        return cached
    own = ("-h", "--help", "--version")  # the program's own options; others are compare's
    if not argv or (argv[0] not in own and (argv[0][:1] == "-" or "=" in argv[0])):
        argv = ["compare", *argv]  # the main job: options and KEY=VALUE go to compare
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    stray = [x for x in extra if not (_ASSIGNMENT.fullmatch(x) and hasattr(args, "assignments"))]
    if stray:
        parser.error(f"unrecognized arguments: {' '.join(stray)}")
    if extra:
        args.assignments = [*args.assignments, *extra]
    run: Callable[[argparse.Namespace], int] = args.run
    try:
        if run is not _cmd_verify:  # verify builds its files' layouts itself, unregistered
            _load_user_layouts(args)
        status = run(args)
        sys.stdout.flush()  # a full disk or a closed pipe shows here, not at exit
        return status
    except BrokenPipeError:
        silence_stdout()
        return 0
    except OSError as exc:
        if exc.filename is not None:  # a file the command read or wrote
            raise_line = f"{printable(exc.filename)}: {exc.strerror}"
        else:  # our own standard output
            silence_stdout()
            raise_line = f"cannot write the output: {exc.strerror}"
        print(f"{PROG}: error: {raise_line}", file=sys.stderr)
        return 2
    except InputError as exc:
        print(f"{PROG}: error: {printable(exc)}", file=sys.stderr)
        return 2
    except InternalError as exc:
        print(f"{PROG}: internal error: {printable(exc)} (please report this)", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a bug: one line for users, the traceback on request
        if os.environ.get("SHARDCOST_DEBUG"):
            raise
        print(
            f"{PROG}: internal error: {type(exc).__name__}: {printable(exc)} "
            "(please report this; SHARDCOST_DEBUG=1 shows the traceback)",
            file=sys.stderr,
        )
        return 3
