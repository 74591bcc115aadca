"""``shardcost plan`` and ``shardcost model --plan`` without SymPy: the engine's
placements and compiled functions, stored, replayed by ``shardcost.planning``.

After the engine answered a plan command once, ``store_plan`` writes one cache entry
for the config file's bytes, the chip, the chips (or the plan) and the KEY=VALUE
parameters: the model's facts, every placement the engine made (each stage's pieces in
each phase, or the reason the plan cannot run), each compiled function the pieces call
(its generated module, and the blocked float64 programs its array calls ran), and, for
the collectives of the plans the engine reported, the layers' metrics programs
(``codegen.numeric``). ``run_plan`` answers a later call with another workload, other
limits or another reserve from it: the same ``planning`` lines run over the stored
placements, so the answer is the engine's, byte for byte, or there is none (then the
engine answers and stores what it was missing). An entry is stored only if it gives
the engine's answer at the call just answered.

What the stored functions cannot settle as the engine would (an array row that is not
a valid configuration, a count at or past 2^53, a warning, a chip figure it refuses)
raises ``Unsure``, and the engine answers.

numpy and the standard library only on the fast path.
"""

# open(), not pathlib: the fast path keeps its cold start short

from __future__ import annotations

import json
import math
import os
import re
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from fractions import Fraction
from types import SimpleNamespace
from typing import Any

import numpy as np

from shardcost import cache, planning
from shardcost.cached_sweep import Unsure, float_pass, pattern_key
from shardcost.cached_sweep import _Program as BlockedProgram
from shardcost.codegen import plain
from shardcost.codegen.arrays import Inputs
from shardcost.numeric import attempt
from shardcost.numeric_model import _config_path, _load_decoupled, config_entry

KIND = "plan"
FORMAT = 1  # bump when the entry's layout changes
_FORMATS = ("table", "json", "markdown")
_COUNT = re.compile(r"[0-9]{1,9}")
_DECIMAL = re.compile(r"[0-9]{1,12}(\.[0-9]{1,12})?")
_ASSIGNMENT = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)=(.*)", re.DOTALL)
_WORKLOAD = {"--prompt": 2048, "--output-tokens": 256, "--concurrency": 1}
_PLAN_OPTIONS = (
    "--chips",
    "--hardware",
    *_WORKLOAD,
    "--reserve",
    "--max-tpot-ms",
    "--max-ttft-ms",
    "--min-context",
    "--format",
    "-o",
    "--output",
)
_PLAN_FLAGS = ("--interleaved", "--all")
_MODEL_OPTIONS = ("--plan", "--hardware", *_WORKLOAD, "--reserve", "--format", "-o", "--output")


# ------------------------------------------------------------ the command line's fast path


def _scan(
    words: Sequence[str], options: Sequence[str], flags: Sequence[str]
) -> tuple[dict[str, str], list[str], list[str]] | None:
    """``words`` as (options, positional words, KEY=VALUE words), or None for anything
    argparse might read otherwise: an option not listed (help, an abbreviation, -o), one
    given twice, a value that starts with a dash."""
    opts: dict[str, str] = {}
    positional: list[str] = []
    assignments: list[str] = []
    rest = list(words)
    while rest:
        word = rest.pop(0)
        if word.startswith("-"):
            name, eq, val = word.partition("=")
            if name in opts:
                return None
            if name in flags and not eq:
                opts[name] = ""
                continue
            if name not in options:
                return None
            if not eq:
                if not rest or rest[0].startswith("-"):
                    return None
                val = rest.pop(0)
            opts[name] = val
        elif _ASSIGNMENT.fullmatch(word):
            assignments.append(word)
        else:
            positional.append(word)
    return opts, positional, assignments


def _parse(argv: Sequence[str]) -> dict[str, Any] | None:
    """``plan CONFIG --chips N --hardware H ...`` or ``model CONFIG --plan P --hardware H
    ...`` as the fast path takes them, or None (the engine parses it)."""
    if len(argv) < 2 or argv[0] not in ("plan", "model"):
        return None
    command = argv[0]
    scanned = (
        _scan(argv[1:], _PLAN_OPTIONS, _PLAN_FLAGS)
        if command == "plan"
        else _scan(argv[1:], _MODEL_OPTIONS, ())
    )
    if scanned is None or len(scanned[1]) != 1:
        return None
    opts, (config,), assignments = scanned
    keys = [a.partition("=")[0] for a in assignments]
    if len(set(keys)) != len(keys):
        return None
    hardware = opts.get("--hardware")
    if hardware is None or hardware.endswith(".toml") or "/" in hardware:
        return None  # a file: its text would have to be part of the key
    fmt = opts.get("--format", "table")
    if fmt not in _FORMATS:
        return None
    counts = {}
    for name, default in (*_WORKLOAD.items(), ("--chips", None), ("--min-context", 0)):
        raw = opts.get(name)
        if raw is None:
            counts[name] = default
        elif _COUNT.fullmatch(raw) and int(raw) >= 1:
            counts[name] = int(raw)
        else:
            return None
    limits = {}
    for name in ("--max-tpot-ms", "--max-ttft-ms"):
        raw = opts.get(name)
        if raw is not None and not (_DECIMAL.fullmatch(raw) and 0 < float(raw) < 1e12):
            return None
        limits[name] = None if raw is None else float(raw)
    if command == "plan" and counts["--chips"] is None:
        return None
    if command == "model" and "--plan" not in opts:
        return None
    if "-o" in opts and "--output" in opts:
        return None  # argparse keeps the last: the engine reads it
    output = opts.get("-o", opts.get("--output"))
    if output == "":
        return None
    return {
        "command": command,
        "config": config,
        "hardware": hardware,
        "chips": counts["--chips"],
        "plan": opts.get("--plan"),
        "interleaved": "--interleaved" in opts,
        "all": "--all" in opts,
        "format": fmt,
        "workload": (counts["--prompt"], counts["--output-tokens"], counts["--concurrency"]),
        "min_context": counts["--min-context"],
        "limits": (limits["--max-tpot-ms"], limits["--max-ttft-ms"]),
        "reserve": opts.get("--reserve", "0.1"),
        "assignments": sorted(assignments),
        "output": output,
    }


def plan_key(path: str, digest: str, args: Mapping[str, Any]) -> str:
    """The cache key of a plan command's entry: the config (path and bytes), the chip,
    the chips searched (or the plan placed) and the KEY=VALUE parameters; the workload,
    limits and reserve are the entry's inputs."""
    what = [
        args["command"],
        path,
        digest,
        args["hardware"],
        args["chips"],
        args["plan"],
        args["interleaved"],
        args["assignments"],
    ]
    return cache.key("plan", json.dumps(what))


def run_plan(argv: Sequence[str]) -> tuple[str, list[str]] | None:
    """What ``shardcost plan ...`` (or ``model --plan``) prints, from a cached entry, or
    None: no entry yet, or not sure (then the engine answers)."""
    args = _parse(argv)
    if args is None:
        return None
    start = time.perf_counter()
    text = config_entry(KIND, args["config"], lambda path, digest: plan_key(path, digest, args))
    if text is None:
        return None
    try:
        return answer(json.loads(text), args, start)
    except Exception:  # a damaged entry, or a value the programs are not sure of
        return None


def try_plan(argv: Sequence[str]) -> int | None:
    """Print ``shardcost plan ...`` (or ``model --plan``) from a cached entry and return
    0, or None."""
    return attempt(run_plan, argv)


def answer(
    entry: Mapping[str, Any], args: Mapping[str, Any], start: float
) -> tuple[str, list[str]]:
    """The command's stdout and stderr lines from ``entry``; Unsure (or any error: the
    engine answers) where the entry cannot give the engine's answer."""
    if entry.get("format") != FORMAT:
        raise Unsure("an entry of another format")
    model = StoredModel(entry)
    workload = planning.Workload(*args["workload"])
    reserve = planning.reserve_fraction(args["reserve"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the engine prints warnings; it says them
        found = _compute(model, args, workload, reserve, start)
    text, lines = output(found, args)
    if args.get("output") is None:
        return text, lines
    # -o FILE: a refusal or a failure goes to the engine, which says why
    from pathlib import Path

    from shardcost.files import write_output

    said = write_output(Path(args["output"]), text, [Path(args["config"])])
    return "", [*lines, said]


def _compute(
    model: planning.Model,
    args: Mapping[str, Any],
    workload: planning.Workload,
    reserve: Fraction,
    start: float,
) -> Any:
    """The search (or the one plan) that ``args`` asks for, over ``model``."""
    if args["command"] == "model":
        plan = planning.parse_plan(args["plan"])
        result = planning.evaluate(model, plan, workload, reserve=reserve)
        return planning.PlannedModel(model.config, model.hardware, workload, result)
    limits = planning.Limits(*args["limits"], args["min_context"])
    return planning.search(
        model,
        args["chips"],
        workload,
        limits=limits,
        reserve=reserve,
        interleaved=args["interleaved"],
        started=start,
    )


def output(found: Any, args: Mapping[str, Any]) -> tuple[str, list[str]]:
    """What the command prints of ``found``: stdout, and the lines for stderr."""
    fmt = args["format"]
    if fmt == "json":
        text = json.dumps(found.to_dict(), indent=2)
    else:
        from shardcost.reports.plans import planned_text, search_text

        if args["command"] == "model":
            text = planned_text(found, fmt)
        else:
            text = search_text(found, fmt, every=args["all"])
    text = text if text.endswith("\n") else text + "\n"
    if args["command"] == "model":
        return text, []
    return text, [f"{found.tried} plans evaluated in {found.seconds:.2f} s"]


# ------------------------------------------------------------ the stored model


class StoredFunction:
    """A compiled function from its stored module: scalars through its own exact lines;
    arrays (``_arrays``) through the blocked float64 programs the engine ran."""

    def __init__(self, stored: Mapping[str, Any], helpers: Any) -> None:
        self.all_names = tuple(stored["all_names"])
        self.counts = int(stored["counts"])
        self.hardware_names = tuple(stored["hardware_names"])
        self.variants = stored["variants"]
        self.loaded: dict[tuple[str, str], BlockedProgram] = {}
        self.helpers = helpers
        scope: dict[str, Any] = {"np": np, "_rt": helpers, "_inf": math.inf, "_arrays": self}
        name = str(stored["name"])
        # our own generated module, read back from the cache (never user text)
        exec(compile(stored["source"], f"<shardcost cached plan {name}>", "exec"), scope)
        self.function: Callable[..., Any] = scope[name]

    def __call__(self, key: tuple[Any, ...], exact: bool, values: tuple[Any, ...]) -> Any:
        """``ArrayPaths.__call__`` (strict, float64) where the engine would neither
        raise nor settle rows exactly; else Unsure."""
        if exact:
            raise Unsure("exact arrays")
        if len(values) > self.counts:
            self.helpers.hardware_error(self.hardware_names, values[self.counts :])
        at = json.dumps(list(key))
        variant = self.variants.get(at)
        if variant is None:
            raise Unsure("conventions the engine did not run")
        given = Inputs.of(values, self.all_names, self.counts, exact=False)
        chosen = given.select(variant["picks"], variant["inputs"])
        pattern = pattern_key(chosen.pattern(False))
        prog = self.loaded.get((at, pattern))
        if prog is None:
            stored = variant["programs"].get(pattern)
            if stored is None:
                raise Unsure("no program for the way these inputs vary")
            prog = self.loaded[at, pattern] = BlockedProgram(stored)
        result, ok, _ = float_pass(variant, prog, given, chosen)
        if not ok.all():
            raise Unsure("a row the engine refuses: it says why")
        return result


def _helpers(entry: Mapping[str, Any]) -> Any:
    """What a stored module calls as ``_rt``: the engine's own error helpers
    (``codegen.plain``), and a hardware check that leaves every refusal to the engine."""
    zero_allowed = frozenset(entry["zero_allowed"])
    fractions = frozenset(entry["fractions"])

    def hardware_error(names: Sequence[str], values: Sequence[object]) -> None:
        for name, value in zip(names, values, strict=True):
            try:
                array = np.asarray(value, dtype=np.float64)
            except (TypeError, ValueError):
                raise Unsure("a chip figure that is not a number") from None
            good = np.isfinite(array) & (array >= 0 if name in zero_allowed else array > 0)
            if name in fractions:
                good &= array <= 1
            if not np.all(good):
                raise Unsure("a chip figure the engine refuses")
        return None

    return SimpleNamespace(
        not_divisible=plain.not_divisible,
        not_positive=plain.not_positive,
        bad_conventions=plain.bad_conventions,
        valid=plain.valid,
        ceil_log2=plain.ceil_log2,
        EXACT_FLOAT=plain.EXACT_FLOAT,
        hardware_error=hardware_error,
    )


def _fraction(pair: Sequence[int]) -> Fraction:
    return Fraction(int(pair[0]), int(pair[1]))


def _plain_fraction(value: Fraction) -> list[int]:
    return [value.numerator, value.denominator]


class StoredModel(planning.Model):
    """A model on a chip from a cache entry: the engine's placements, functions and
    collectives' programs."""

    def __init__(self, entry: Mapping[str, Any]) -> None:
        f, c = entry["facts"], entry["chip"]
        facts = planning.Facts(
            f["name"],
            int(f["hidden_size"]),
            tuple(f["layer_blocks"]),
            bool(f["tie_word_embeddings"]),
            int(f["experts"]),
            bool(f["mla"]),
            _fraction(f["act_bytes"]),
        )
        chip = planning.Chip(
            c["name"],
            c["capacity_bytes"],
            float(c["vector_gb_s"]),
            float(c["kernel_overhead_us"]),
            _fraction(c["send_fixed_ms"]),
            _fraction(c["send_ms_per_byte"]),
        )
        super().__init__(facts, chip, facts, chip)
        self.entry = entry
        self.stored = {json.dumps(p["plan"], sort_keys=True): p for p in entry["placements"]}
        self.functions: dict[str, StoredFunction] = {}
        self.helpers = _helpers(entry)
        self.programs: dict[int, Callable[[dict[str, int]], Any]] = {}

    def placement(self, plan: planning.Plan) -> planning.Placement:
        stored = self.stored.get(json.dumps(asdict(plan), sort_keys=True))
        if stored is None:
            raise Unsure("a plan the engine did not place")
        if stored["error"] is not None:
            raise planning.InputError(stored["error"])
        pieces = self.entry["pieces"]
        return planning.Placement(
            plan,
            dict(stored["layouts"]),
            tuple(
                planning.Stage(int(i), tuple((int(b), int(n)) for b, n in layers), first, last)
                for i, layers, first, last in stored["stages"]
            ),
            {
                (int(stage), phase): tuple(_piece(pieces[k], self.entry["kwargs"]) for k in ks)
                for stage, phase, ks in stored["pieces"]
            },
        )

    def run(self, function: str, kwargs: dict[str, Any]) -> Mapping[str, Any]:
        found = self.functions.get(function)
        if found is None:
            found = self.functions[function] = StoredFunction(
                self.entry["functions"][function], self.helpers
            )
        return found.function(**kwargs)  # type: ignore[no-any-return]

    def said(
        self, piece: planning.Call, phase: str, values: Mapping[str, int]
    ) -> list[dict[str, Any]]:
        stored = self.entry["said"].get(piece.said)
        if stored is None:
            raise Unsure("collectives the engine did not evaluate")
        counts = dict(stored["fixed"]) | {k: values[k] for k in stored["reads"]}
        index = int(stored["program"])
        program = self.programs.get(index)
        if program is None:
            program = self.programs[index] = _load_decoupled(self.entry["programs"][index])
        found = program(counts)
        if found is None:
            raise Unsure("a collective the program is not sure of")
        return list(found[1]["collectives"])


def _piece(raw: Sequence[Any], kwargs: Sequence[Any]) -> planning.Vectors | planning.Call:
    if raw[0] == "vectors":
        return planning.Vectors(int(raw[1]), int(raw[2]), int(raw[3]))
    _, function, k, reads, scale, count, name, layer, layout, tied, said = raw
    return planning.Call(
        function,
        tuple((str(a), b) for a, b in kwargs[k]),
        tuple(reads),
        int(scale),
        int(count),
        name,
        layer,
        layout,
        bool(tied),
        said,
    )


# ------------------------------------------------------------ storing (after the engine)


def storable(args: Any) -> bool:
    """Whether the engine's answer to ``args`` (argparse's) can be stored: a catalog chip,
    no plot."""
    hardware = getattr(args, "hardware", None)
    if hardware is None or hardware.endswith(".toml") or "/" in hardware:
        return False
    return not getattr(args, "plot", False)


def answered_call(args: Any) -> dict[str, Any]:
    """The plan command the engine answered (``args``: argparse's namespace) as
    ``_parse`` gives it: the entry's key is computed from this."""
    plan = getattr(args, "plan", None)
    return {
        "command": "model" if plan is not None else "plan",
        "config": str(args.config),
        "hardware": args.hardware,
        "chips": getattr(args, "chips", None),
        "plan": plan,
        "interleaved": bool(getattr(args, "interleaved", False)),
        "all": bool(getattr(args, "all", False)),
        "format": args.format,
        "workload": (args.prompt, args.output_tokens, args.concurrency),
        "min_context": getattr(args, "min_context", 0),
        "limits": (getattr(args, "max_tpot_ms", None), getattr(args, "max_ttft_ms", None)),
        "reserve": args.reserve,
        "assignments": sorted(args.assignments),
    }


def store_plan(args: Any, model: Any, found: Any, digest: str | None) -> None:
    """After the engine answered a plan command (``args``: argparse's namespace) with
    ``found`` over ``model`` (``formulas.plan.EngineModel``): write the entry for next
    time, if it gives the same answer."""
    from shardcost.codegen.numeric import Unsupported

    if not storable(args):
        return
    try:
        _store(answered_call(args), model, found, digest)
    except (Unsupported, Unsure):
        return  # something the entry cannot hold: the engine keeps answering
    except Exception:
        if os.environ.get("SHARDCOST_DEBUG"):
            raise  # the answer is printed already; an entry we cannot write is a bug


def _store(args: Mapping[str, Any], model: Any, found: Any, digest: str | None) -> None:
    from shardcost.codegen.numeric import Unsupported

    if digest is None or not cache.enabled():
        return
    path = _config_path(args["config"])
    if path is None:
        return
    key = plan_key(path, digest, args)
    old = cache.read(KIND, key, ".json")
    _evaluate_said(model, args["workload"])
    entry = _entry(model, None if old is None else json.loads(old))
    text = json.dumps(entry)
    stored = json.loads(text)
    if stored != entry:
        raise Unsupported("a value JSON does not give back as it is")
    got = answer(stored, args | {"output": None}, 0.0)
    want = output(found, args)
    if _same(got, want, args):
        cache.write(KIND, key, text, ".json")
    elif os.environ.get("SHARDCOST_DEBUG"):
        raise AssertionError("the stored plan does not answer as the engine did")


def _same(got: tuple[str, list[str]], want: tuple[str, list[str]], args: Mapping[str, Any]) -> bool:
    """Whether two answers agree but for the search's own time."""
    if args["format"] == "json" and args["command"] == "plan":
        a, b = json.loads(got[0]), json.loads(want[0])
        a["seconds"] = b["seconds"] = 0
        return bool(a == b)
    return got[0] == want[0]


def _evaluate_said(model: Any, workload: Sequence[int]) -> None:
    """Have the engine evaluate the collectives of every call of every plan it placed
    (at this call's workload; the programs take any other), so that a later call whose
    search reports other plans finds them: one evaluation per distinct layer input, a
    few ms each."""
    prompt, out, _ = workload
    lengths = {planning.PREFILL: prompt, planning.DECODE: prompt + max(out - 2, 0)}
    for placed in list(model.placements.values()):
        if isinstance(placed, planning.InputError):
            continue
        for (_, phase), pieces in placed.pieces.items():
            for p in pieces:
                if isinstance(p, planning.Vectors) or p.said in model.said_results:
                    continue
                values = {"batch_size": p.scale, planning.LENGTH[phase]: lengths[phase]}
                try:
                    model.said(p, phase, values)
                except planning.InputError:
                    continue  # a call no valid plan makes at these lengths


def _entry(model: Any, old: Mapping[str, Any] | None) -> dict[str, Any]:
    """The entry of the engine's model: its facts, chip, placements, functions and the
    collectives' programs (those of ``old``, an earlier entry of the same call, too)."""
    from shardcost.formulas.hardware import FRACTIONS, ZERO_ALLOWED

    pieces: list[list[Any]] = []
    kwargs: list[list[Any]] = []
    at: dict[str, int] = {}
    at_kwargs: dict[str, int] = {}

    def index(table: list[Any], where: dict[str, int], value: list[Any]) -> int:
        text = json.dumps(value)
        if text not in where:
            where[text] = len(table)
            table.append(value)
        return where[text]

    def piece(p: planning.Vectors | planning.Call) -> int:
        if isinstance(p, planning.Vectors):
            return index(pieces, at, ["vectors", p.weight_bytes, p.kernels, p.count])
        k = index(kwargs, at_kwargs, [list(kv) for kv in p.kwargs])
        raw = [
            "call",
            p.function,
            k,
            list(p.reads),
            p.scale,
            p.count,
            p.name,
            p.layer,
            p.layout,
            p.tied,
            p.said,
        ]
        return index(pieces, at, raw)

    placements = []
    for plan, placed in model.placements.items():
        if isinstance(placed, planning.InputError):
            placements.append({"plan": asdict(plan), "error": str(placed)})
            continue
        placements.append(
            {
                "plan": asdict(plan),
                "error": None,
                "layouts": placed.layouts,
                "stages": [
                    [s.index, [list(x) for x in s.layers], s.first, s.last] for s in placed.stages
                ],
                "pieces": [
                    [s, ph, [piece(p) for p in ps]] for (s, ph), ps in placed.pieces.items()
                ],
            }
        )
    programs, said = _said(model, old)
    facts, chip = model.facts, model.chip
    return {
        "format": FORMAT,
        "facts": {
            "name": facts.name,
            "hidden_size": facts.hidden_size,
            "layer_blocks": list(facts.layer_blocks),
            "tie_word_embeddings": facts.tie_word_embeddings,
            "experts": facts.experts,
            "mla": facts.mla,
            "act_bytes": _plain_fraction(facts.act_bytes),
        },
        "chip": {
            "name": chip.name,
            "capacity_bytes": chip.capacity_bytes,
            "vector_gb_s": chip.vector_gb_s,
            "kernel_overhead_us": chip.kernel_overhead_us,
            "send_fixed_ms": _plain_fraction(chip.send_fixed_ms),
            "send_ms_per_byte": _plain_fraction(chip.send_ms_per_byte),
        },
        "zero_allowed": sorted(ZERO_ALLOWED),
        "fractions": sorted(FRACTIONS),
        "placements": placements,
        "pieces": pieces,
        "kwargs": kwargs,
        "functions": {name: _function(f) for name, f in model.functions.items()},
        "programs": programs,
        "said": said,
    }


def _function(function: Any) -> dict[str, Any]:
    """A compiled function as the entry keeps it: its module, and the blocked float64
    programs its array calls ran (``ArrayPaths.built``)."""
    from shardcost.codegen.numeric import Unsupported

    source = function.__source__
    if "_relations" in source:
        raise Unsupported("a function that derives relations")
    paths = function.arrays
    variants: dict[str, dict[str, Any]] = {}
    for (key, pattern, integer), (blocked, _) in list(paths.built.items()):
        if integer:
            continue
        at = json.dumps(list(key))
        if [tuple(json.loads(at))] != [tuple(key)]:
            raise Unsupported("a switch value JSON does not give back as it is")
        variant = variants.get(at)
        if variant is None:
            plan = paths.plan(key)
            variant = variants[at] = {
                "picks": list(plan.picks),
                "inputs": plan.counts,
                "unread": list(plan.unread),
                "outputs": [name for name, _ in plan.prog.outputs],
                "programs": {},
            }
        variant["programs"][pattern_key(pattern)] = _blocked(blocked)
    for at, variant in variants.items():  # a call whose arrays hold one value: none varies
        key = tuple(json.loads(at))
        none = (False,) * len(variant["picks"])
        scalar = (none, none, none, ())
        if pattern_key(scalar) not in variant["programs"]:
            blocked, _ = paths.blocked(key, scalar, False)
            variant["programs"][pattern_key(scalar)] = _blocked(blocked)
    return {
        "name": function.__name__,
        "source": source,
        "all_names": list(paths.all_names),
        "counts": paths.counts,
        "hardware_names": list(paths.hardware_names),
        "variants": variants,
    }


def _blocked(blocked: Any) -> dict[str, Any]:
    """A blocked program as ``cached_sweep._Program`` reads it back."""
    return {
        "name": blocked.name,
        "source": blocked.source,
        "varies": list(blocked.varies),
        "scratch": [list(s) for s in blocked.scratch],
        "block": blocked.block,
    }


def _said(model: Any, old: Mapping[str, Any] | None) -> tuple[list[str], dict[str, Any]]:
    """The collectives' metrics programs (``codegen.numeric``) of every call the engine
    evaluated them for, with what the call fixes of their counts; and an earlier entry's.
    (``_evaluate_said`` has the engine evaluate those of every call first.)"""
    from shardcost.codegen.numeric import Unsupported, metrics_source
    from shardcost.symbolic.dimensions import BY_NAME as DIMENSIONS

    programs: list[str] = []
    said: dict[str, Any] = {}
    if old is not None and old.get("format") == FORMAT:
        for name, was in old["said"].items():
            source = old["programs"][was["program"]]
            if source not in programs:
                programs.append(source)
            said[name] = dict(was) | {"program": programs.index(source)}
    for name, (mine, result) in model.said_results.items():
        try:
            source = metrics_source(result)
        except Unsupported:
            continue  # the fast path declines a plan that needs it
        if source not in programs:
            programs.append(source)
        counts = {k: v for k, v in mine.items() if k in DIMENSIONS and type(v) is int}
        said[name] = {
            "program": programs.index(source),
            "fixed": {k: v for k, v in counts.items() if k not in planning.WORKLOAD_INPUTS},
            "reads": sorted(k for k in counts if k in planning.WORKLOAD_INPUTS),
        }
    return programs, said
