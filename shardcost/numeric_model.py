"""Whole models without SymPy: the assembly both paths share, and ``shardcost model``'s
fast path.

A model's components are its layers (each an evaluation of one layout at the config's
shapes) and its weight vectors (norms, biases, sinks). The first half of this module
turns the walk of a model and the evaluation of each distinct layer into rows, notes,
sums, memory and the JSON object; ``formulas.model`` calls it with the engine's results
(SymPy), and the fast path below with the numbers of cached straight-line programs
(``codegen.numeric``), so the two cannot add up differently. ``reports.text.render_model``
renders what either builds.

The fast path: after the engine answered ``shardcost model CONFIG.json ...`` once,
``store_model`` writes one cache entry for the config file's bytes, the layout, phase,
hardware and conventions: every distinct layer's metrics program, the config's fixed
inputs of each, and the static rest of the answer (the config's shape, parameter
counts, the walk). ``run_model`` answers a later call with other counts from it without
importing SymPy or the formulas, byte for byte as the engine would, or returns None
(then the engine answers, and says what is wrong where anything is).

Standard library only at module level and on the fast path.
"""

# open(), not pathlib: the fast path keeps its cold start short
# ruff: noqa: PTH116, PTH123

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
from collections.abc import Callable, Iterable, Mapping, Sequence
from fractions import Fraction
from typing import Any

from shardcost import cache
from shardcost.numeric import (
    _INTEGER,
    KIND,
    _load,
    _scan,
    _split,
    answered_call,
    attempt,
    resolve,
)
from shardcost.reports.text import UNITS

METRIC_NAMES = (
    "flops_per_chip",
    "weight_memory_per_chip",
    "activation_memory_per_chip",
    "kv_cache_per_chip",
    "flops_total",
    "weight_memory_total",
    "activation_memory_total",
    "kv_cache_total",
    "communication_bytes",
)
TIMING_NAMES = ("compute_time_ms", "load_time_ms", "communication_time_ms", "wall_clock_time_ms")
_WEIGHTS = ("weight_memory_per_chip", "weight_memory_total")

TIED_NOTE = (
    "tie_word_embeddings: the LM head uses the embedding's matrix; its weight bytes are "
    "counted once, with the embedding (the LM head still reads all of it, the embedding "
    "only the rows it gathers)"
)

# A chip as the vectors' load time reads it: memory bandwidth (GB/s), its achieved
# fraction, and the overhead of one kernel launch (µs); exact.
ChipFigures = tuple[Fraction, Fraction, Fraction]


# ------------------------------------------------------------ the assembly (both paths)


def vector_elements(size: int, shard: str, tp: int, num_kv_heads: object) -> int:
    """A weight vector's elements on one chip of ``tp`` ranks: ``size`` whole where it is
    replicated (``shard`` empty), else its share (KV-head vectors by whole heads)."""
    if tp == 1 or not shard:
        return size
    if shard == "kv_heads":
        h_kv = int(num_kv_heads)  # type: ignore[call-overload]
        per_head = size // h_kv
        return per_head * -(-h_kv // tp)
    return -(-size // tp)


def vector_row(
    weight_bytes: int, kernels: int, chips: int, chip: ChipFigures | None
) -> tuple[dict[str, int], dict[str, float] | None]:
    """Weight vectors without a matrix product (norm weights, biases): their bytes on
    every chip, their load time, and a kernel overhead per norm (timed on ``chip``)."""
    metrics = dict.fromkeys(METRIC_NAMES, 0)
    metrics["weight_memory_per_chip"] = weight_bytes
    metrics["weight_memory_total"] = weight_bytes * chips
    timing = None
    if chip is not None:
        bandwidth, efficiency, overhead_us = chip
        load = Fraction(weight_bytes) / (bandwidth * efficiency * 10**6)
        compute = kernels * overhead_us / 10**3
        values = (float(compute), float(load), 0.0, float(max(compute, load)))
        timing = dict(zip(TIMING_NAMES, values, strict=True))
    return metrics, timing


def without_weights(metrics: Mapping[str, int]) -> dict[str, int]:
    """``metrics`` with no weight bytes (a tied LM head: its matrix is the embedding's)."""
    return {k: 0 if k in _WEIGHTS else metrics[k] for k in METRIC_NAMES}


def layer_piece(
    name: str,
    number: int,
    block: int,
    slot: str,
    layer: str,
    layout: str,
    evaluation: int,
    tied: bool,
) -> dict[str, Any]:
    """One layer of the walk: evaluation ``evaluation`` (each distinct one once), counted
    ``number`` times; ``tied``: an LM head whose matrix is the embedding's."""
    return {
        "kind": "layer",
        "name": name,
        "count": number,
        "block": block,
        "slot": slot,
        "layer": layer,
        "layout": layout,
        "eval": evaluation,
        "tied": tied,
    }


def vector_piece(
    name: str, number: int, block: int, like: str, vectors: Iterable[tuple[int, str, int]]
) -> dict[str, Any]:
    """One row of weight vectors, (size, shard, kernels) each, on the chips of the latest
    layer of slot ``like``."""
    return {
        "kind": "vectors",
        "name": name,
        "count": number,
        "block": block,
        "like": like,
        "vectors": [list(v) for v in vectors],
    }


def assemble(
    pieces: Sequence[Mapping[str, Any]],
    evaluate: Callable[[int], Mapping[str, Any] | None],
    *,
    notes: Iterable[str],
    num_kv_heads: object,
    bytes_per_elem: int,
) -> tuple[list[dict[str, Any]], list[str], list[Mapping[str, Any]]] | None:
    """The model's rows in walk order, its notes (``notes`` first) and each evaluation's
    record in the order first evaluated; None when ``evaluate`` gives none.

    ``evaluate(i)`` gives evaluation ``i``'s record: ``metrics``, ``timing`` (or None),
    ``notes``, ``chips``, ``tp`` (its tensor-parallel degree, 1 when it has none),
    ``chip`` (``ChipFigures`` as its kernel class sees the chip, or None) and ``params``.
    """
    rows: list[dict[str, Any]] = []
    said = list(notes)
    done: dict[int, Mapping[str, Any]] = {}
    latest: dict[str, Mapping[str, Any]] = {}  # the latest layer of each slot, for vectors
    for piece in pieces:
        if piece["kind"] == "vectors":
            like = latest[piece["like"]]
            tp = like["tp"]
            elements = sum(
                vector_elements(s, shard, tp, num_kv_heads) for s, shard, _ in piece["vectors"]
            )
            kernels = sum(k for _, _, k in piece["vectors"])
            metrics, timing = vector_row(
                elements * bytes_per_elem, kernels, like["chips"], like["chip"]
            )
            rows.append(_row(piece, None, None, metrics, timing, None, like["chips"], []))
            continue
        i = piece["eval"]
        if i not in done:
            record = evaluate(i)
            if record is None:
                return None
            done[i] = record
            said.extend(f"{piece['layer']}: {n}" for n in record["notes"])
        record = latest[piece["slot"]] = done[i]
        metrics = {k: record["metrics"][k] for k in METRIC_NAMES}
        if piece["tied"]:
            metrics = without_weights(metrics)
            said.append(TIED_NOTE)
        timing = record["timing"]
        timing = None if timing is None else {k: timing[k] for k in TIMING_NAMES}
        rows.append(
            _row(
                piece,
                piece["layer"],
                piece["layout"],
                metrics,
                timing,
                i,
                record["chips"],
                record["collectives"],
            )
        )
    return rows, said, list(done.values())


def _row(
    piece: Mapping[str, Any],
    layer: str | None,
    layout: str | None,
    metrics: dict[str, int],
    timing: dict[str, float] | None,
    evaluation: int | None,
    chips: int,
    collectives: Sequence[Mapping[str, Any]],
) -> dict[str, Any]:
    return {
        "name": piece["name"],
        "count": piece["count"],
        "layer": layer,
        "layout": layout,
        "metrics": metrics,
        "timing": timing,
        "block": piece["block"],
        "eval": evaluation,
        "chips": chips,
        "collectives": [dict(c) for c in collectives],
    }


def sum_metrics(parts: Iterable[tuple[Mapping[str, int], int]]) -> dict[str, int]:
    """Σ count × metrics."""
    parts = list(parts)
    return {n: sum(m[n] * k for m, k in parts) for n in METRIC_NAMES}


def model_sums(
    rows: Sequence[Mapping[str, Any]], timed: bool
) -> tuple[dict[str, int], dict[str, int], dict[str, float] | None]:
    """The model per chip (every component, every layer), one decoder layer of the first
    block (mixer, channel mixer, vectors) and, ``timed``, the components' times in
    sequence."""
    per_layer = sum_metrics(
        (r["metrics"], 1) for r in rows if r["block"] == 0 and r["name"] != "final_norm"
    )
    total = sum_metrics((r["metrics"], r["count"]) for r in rows)
    timing = None
    if timed:
        timing = {
            f: sum(r["timing"][f] * r["count"] for r in rows if r["timing"] is not None)
            for f in TIMING_NAMES
        }
    return total, per_layer, timing


def shown_params(
    records: Iterable[Mapping[str, Any]],
    hidden: Callable[[Mapping[str, Any], str, object], bool],
) -> dict[str, object]:
    """The parameters in force over every evaluation (a later one's value last), but
    those ``hidden(record, key, value)`` says (the config's own, static conventions at
    their defaults)."""
    shown: dict[str, object] = {}
    for record in records:
        shown |= {k: v for k, v in record["params"].items() if not hidden(record, k, v)}
    return shown


def memory(
    metrics: Mapping[str, int], rows: Sequence[Mapping[str, Any]], capacity: int | None
) -> dict[str, Any]:
    """Weights, the whole KV cache and the largest one component's activations at once
    (inference frees them layer by layer), per chip; and whether that fits."""
    peak = max(r["metrics"]["activation_memory_per_chip"] for r in rows)
    used = metrics["weight_memory_per_chip"] + metrics["kv_cache_per_chip"] + peak
    return {
        "weights_per_chip": metrics["weight_memory_per_chip"],
        "kv_cache_per_chip": metrics["kv_cache_per_chip"],
        "peak_activation_per_chip": peak,
        "total_per_chip": used,
        "capacity_per_chip": capacity,
        "fits": None if capacity is None else used <= capacity,
    }


def component_json(row: Mapping[str, Any]) -> dict[str, Any]:
    """One component of ``shardcost model``'s JSON."""
    out: dict[str, Any] = {
        "name": row["name"],
        "count": row["count"],
        "layer": row["layer"],
        "layout": row["layout"],
        "chips": row["chips"],
        "metrics": dict(row["metrics"]),
        "collectives": [dict(c) for c in row["collectives"]],
    }
    if row["timing"] is not None:
        out["timing"] = dict(row["timing"])
    return out


def model_json(view: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON object of ``shardcost model`` from a model's view (``ModelResult.view``)."""
    rows = view["components"]
    out: dict[str, Any] = {
        "model": view["model"],
        "phase": view["phase"],
        "layout": view["layout"],
        "layouts": {r["layer"]: r["layout"] for r in rows if r["layer"] is not None},
        "chips": view["chips"],
        "params": view["params"],
        "parameters": view["parameters"],
        "metrics": dict(view["metrics"]),
        "per_layer": dict(view["per_layer"]),
        "components": [component_json(r) for r in rows],
        "memory": dict(view["memory"]),
        "notes": list(view["notes"]),
    }
    if view["timing"] is not None:
        out["timing"] = dict(view["timing"])
    out["units"] = UNITS
    return out


# ------------------------------------------------------------ the fast path

FORMAT = 1  # bump when the entry's layout changes
_OPTIONS = ("--phase", "--layout", "--hardware", "--format")
_FORMATS = ("table", "json", "markdown")
_PHASES = ("prefill", "decode")
_MAX_DIGITS = 40  # formulas.inputs.parse_count's limit on a count's text
MAX_CONFIG = 1 << 20  # bytes read of a config to key it; a larger one goes to the engine


def _parse(argv: Sequence[str]) -> dict[str, Any] | None:
    """``model CONFIG.json [--phase P] [--layout L] [--hardware NAME] [--format F]
    KEY=VALUE...``, or None for anything else (--plan, -o, workload options, files)."""
    if len(argv) < 2 or argv[0] != "model":
        return None
    words = list(argv[1:])
    # the first word that is no option (nor an option's value) is the config: argparse
    # takes it so even where it holds "=" (and then refuses KEY=VALUE's that are not)
    i = 0
    while i < len(words) and words[i].startswith("-"):
        i += 1 if "=" in words[i] else 2
    if i >= len(words) or "=" in words[i]:
        return None
    config = words.pop(i)
    scanned = _scan(words, _OPTIONS)
    if scanned is None or scanned[1]:
        return None
    opts, _, assignments = scanned
    fmt = opts.get("--format", "table")
    phase = opts.get("--phase", "prefill")
    layout = opts.get("--layout", "single")
    hardware = opts.get("--hardware")
    if fmt not in _FORMATS or phase not in _PHASES or _is_file(layout):
        return None
    if hardware is not None and _is_file(hardware):
        return None  # a file: its text would have to be part of the key
    return {
        "config": config,
        "layout": layout,
        "phase": phase,
        "hardware": hardware,
        "format": fmt,
        "assignments": assignments,
    }


def _is_file(name: str) -> bool:
    return name.endswith(".toml") or "/" in name or name.startswith("-")


def _config_path(text: str) -> str | None:
    """The config's path as the engine names it (``str(Path(text))``), or None."""
    if not text or "\0" in text:
        return None
    from pathlib import PurePath  # loaded with ``shardcost`` already

    return str(PurePath(text))


def _config_digest(path: str) -> str | None:
    """The sha256 of the config file's bytes, or None (then the engine reads it, and
    says what is wrong). Only a regular file is opened: a FIFO would block ``open``."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return None
        with open(path, "rb") as f:
            data = f.read(MAX_CONFIG + 1)
    except (OSError, ValueError):
        return None
    if len(data) > MAX_CONFIG:
        return None
    return hashlib.sha256(data).hexdigest()


def model_key(path: str, digest: str, args: Mapping[str, Any]) -> str:
    """The cache key of the model's entry: the config (path and bytes), layout, phase,
    hardware and conventions; the counts are the programs' inputs."""
    _, fixed = split_counts(args["assignments"])
    what = [path, digest, args["layout"], args["phase"], args["hardware"], fixed]
    return cache.key("model", json.dumps(what))


def _fraction(pair: Sequence[int]) -> Fraction:
    return Fraction(int(pair[0]), int(pair[1]))


class _Programs:
    """The entry's metrics programs, each loaded (compiled) once, when first run."""

    def __init__(self, sources: Sequence[str]) -> None:
        self.sources = sources
        self.loaded: dict[int, Callable[[dict[str, int]], Any]] = {}

    def __call__(self, index: int) -> Callable[[dict[str, int]], Any]:
        found = self.loaded.get(index)
        if found is None:
            found = self.loaded[index] = _load_decoupled(self.sources[index])
        return found


def _load_decoupled(source: str) -> Callable[[dict[str, int]], Any]:
    """A metrics program whose relations keep all three values when all three are given
    (a model's config may set head_dim apart from hidden_size / num_heads), as the engine
    evaluates a model's layers (``resolve_inputs(decoupled_heads=True)``)."""
    run = _load(source)
    namespace = run.__globals__

    def decoupled(*args: Any) -> dict[str, int] | None:
        return resolve(*args, decoupled=True)

    namespace["_resolve"] = decoupled
    return run


def answer(entry: Mapping[str, Any], counts: Mapping[str, int]) -> dict[str, Any] | None:
    """The model's view (``render_model``, ``model_json``) at ``counts`` from a stored
    entry, or None where the programs are not sure or a count is one the engine refuses
    or reads differently."""
    if entry.get("format") != FORMAT:
        return None
    allowed = set(entry["allowed"])
    counts = dict(counts)
    lengths = counts.pop("past_seq_len", None) if entry.get("ragged") else None
    if entry.get("ragged") and (type(lengths) is not tuple or len(lengths) < 2):
        return None  # an entry for ragged batches answers ragged batches only
    checked = [*counts.values(), *(lengths or ())]
    if any(k not in allowed for k in counts) or any(
        type(v) is not int or not 1 <= v <= entry["max_count"] for v in checked
    ):
        return None  # a key no layer reads, a config's own, a zero: the engine says why
    if lengths is not None:  # as the engine's: every layer sees the batch's requests
        counts.setdefault("batch_size", len(lengths))
    programs = _Programs(entry["programs"])
    evals = entry["evals"]

    def evaluate(i: int) -> dict[str, Any] | None:
        ev = evals[i]
        given = {k: v for k, v in (ev["fixed"] | counts).items() if k in ev["reads"]}
        if ev.get("ragged"):  # a layer that reads each request's length
            found = programs(ev["program"])(given, lengths)
        elif lengths is not None and "past_seq_len" in ev["reads"]:
            return None
        else:
            found = programs(ev["program"])(given)
        if found is None:
            return None
        view, out = found
        dims = dict(view["dims"])
        return {
            "metrics": view["metrics"],
            "timing": view["timing"],
            "notes": view["notes"],
            "chips": view["chips"],
            "collectives": out["collectives"],
            "tp": int(dims.get("tensor_parallel", 1)) if ev["over_tp"] else 1,
            "chip": None if ev["chip"] is None else tuple(map(_fraction, ev["chip"])),
            "params": out["params"],
            "hidden": ev["hidden"],
        }

    b = counts.get("bytes_per_elem", entry["bytes_per_elem"])
    built = assemble(
        entry["pieces"],
        evaluate,
        notes=entry["config_notes"],
        num_kv_heads=entry["num_kv_heads"],
        bytes_per_elem=b,
    )
    if built is None:
        return None
    rows, notes, records = built
    return model_view(entry["static"], rows, records, notes, lambda r, k, _: k in r["hidden"])


def model_view(
    static: Mapping[str, Any],
    rows: list[dict[str, Any]],
    records: Sequence[Mapping[str, Any]],
    notes: Iterable[str],
    hidden: Callable[[Mapping[str, Any], str, object], bool],
) -> dict[str, Any]:
    """A model's view from its static parts, its rows, the evaluations' records and notes
    (the fast path's; ``ModelResult.view`` gives the engine's, the same keys)."""
    timed = static["hardware"] is not None
    total, per_layer, timing = model_sums(rows, timed)
    return {
        **static,
        "chips": records[0]["chips"],
        "params": shown_params(records, hidden),
        "components": rows,
        "metrics": total,
        "per_layer": per_layer,
        "memory": memory(total, rows, static["capacity"]),
        "timing": timing,
        "notes": list(dict.fromkeys(notes)),
    }


def output(view: Mapping[str, Any], fmt: str) -> str:
    """What ``shardcost model`` prints of ``view`` in ``fmt``."""
    if fmt == "json":
        return json.dumps(model_json(view), indent=2) + "\n"
    from shardcost.reports.text import render_model

    return render_model(view, fmt)


def run_model(argv: Sequence[str]) -> str | None:
    """The output of ``shardcost model ...`` from a cached entry, or None: no entry yet,
    or not sure (then the engine answers)."""
    args = _parse(argv)
    if args is None:
        return None
    text = config_entry(KIND, args["config"], lambda path, digest: model_key(path, digest, args))
    if text is None:
        return None
    if any(len(v) > _MAX_DIGITS and _INTEGER.fullmatch(v) for _, v in args["assignments"]):
        return None  # the engine refuses such a count, whatever its value
    counts, _ = split_counts(args["assignments"])
    try:
        view = answer(json.loads(text), counts)
    except Exception:  # a damaged entry, or a value a program cannot take: the engine
        return None
    return None if view is None else output(view, args["format"])


# a ragged batch's past lengths, as the fast paths take them (the engine reads more forms)
LENGTHS = re.compile(r"[1-9][0-9]{0,11}(,[1-9][0-9]{0,11})+")
MAX_REQUESTS = 1_000_000  # formulas.inputs.MAX_REQUESTS
_RAGGED = ["past_seq_len", "ragged"]  # what keys a ragged batch's entry apart


def split_counts(
    assignments: Sequence[tuple[str, str]],
) -> tuple[dict[str, Any], list[list[str]]]:
    """``numeric._split``, and a ragged batch's lengths as a count too (a tuple): the
    entry's key says only that the batch is ragged, so it answers any lengths."""
    counts, fixed = _split(assignments)
    for i, (key, text) in enumerate(fixed):
        if key == "past_seq_len" and LENGTHS.fullmatch(text):
            if text.count(",") >= MAX_REQUESTS:
                break  # the engine refuses it
            counts[key] = tuple(int(t) for t in text.split(","))
            fixed[i] = list(_RAGGED)
    return counts, fixed


def config_entry(kind: str, config: str, key: Callable[[str, str], str]) -> str | None:
    """The text of the ``kind`` entry for the config file named ``config``, stored under
    ``key(path, digest of its bytes)``; None: the cache is off, no such regular file, or
    no entry yet."""
    if not cache.enabled():
        return None
    path = _config_path(config)
    digest = None if path is None else _config_digest(path)
    if path is None or digest is None:
        return None
    return cache.read(kind, key(path, digest), ".json")


def try_model(argv: Sequence[str]) -> int | None:
    """Print ``shardcost model ...`` from a cached entry and return 0, or None."""
    return attempt(run_model, argv)


# ------------------------------------------------------------ storing (after the engine)

# the view's parts that depend on the config, phase, layout and chip only
STATIC_KEYS = (
    "model",
    "summary",
    "phase",
    "layout",
    "parameters",
    "hardware",
    "capacity",
    "hardware_fields",
)


def config_digest(path: str) -> str | None:
    """The sha256 of the config file's bytes (read before the engine reads it, so that
    an edit in between misses), or None."""
    return _config_digest(path)


def store_model(
    argv_assignments: Sequence[str], args: Any, result: Any, digest: str | None
) -> None:
    """After the engine answered ``model`` (no --plan, no -o, a catalog chip): write the
    entry for next time, when the call is one the programs can take."""
    from shardcost.codegen.numeric import Unsupported

    try:
        _store_model(argv_assignments, args, result, digest)
    except Unsupported:
        return  # something the exact printer does not print: the engine keeps answering
    except Exception:
        if os.environ.get("SHARDCOST_DEBUG"):
            raise  # the answer is printed already; an entry we cannot write is a bug


def _store_model(
    argv_assignments: Sequence[str], args: Any, result: Any, digest: str | None
) -> None:
    from shardcost.codegen.numeric import Unsupported
    from shardcost.formulas.conventions import BY_NAME as CONVENTIONS
    from shardcost.formulas.model import FROM_CONFIG
    from shardcost.symbolic.dimensions import BY_NAME as DIMENSIONS

    if digest is None or not cache.enabled() or getattr(args, "plan", None) is not None:
        return
    if getattr(args, "output", None) is not None:
        return
    if args.hardware is not None and _is_file(args.hardware):
        return
    if _is_file(args.layout):
        return
    parsed = answered_call(args, argv_assignments)
    pairs = parsed["assignments"]
    counts, fixed = split_counts(pairs)
    if any(k not in DIMENSIONS or k in CONVENTIONS for k in counts):
        return  # an integer convention or a hardware field: it would fix the programs
    if any(k not in CONVENTIONS or k in FROM_CONFIG for k, _ in fixed if [k, _] != _RAGGED):
        return
    entry = _entry(result, args.hardware, dict(pairs), counts)
    if entry is None:
        return
    try:
        text = json.dumps(entry)
    except (TypeError, ValueError):
        raise Unsupported("a value JSON does not hold") from None
    _check(text, counts, result)
    cache.write(KIND, model_key(str(args.config), digest, parsed), text, ".json")


def _entry(
    result: Any, hardware: str | None, params: dict[str, str], counts: Mapping[str, int]
) -> dict[str, Any] | None:
    """The entry of an evaluated model: each distinct layer's program, what the config
    fixes of its inputs, what it reads, and the static rest; None for a model whose
    layers are not all the package's own."""
    from shardcost.codegen.numeric import Unsupported
    from shardcost.formulas.conventions import BY_NAME as CONVENTIONS
    from shardcost.formulas.inputs import MAX_COUNT
    from shardcost.formulas.model import (
        FROM_CONFIG,
        _given,
        _hidden,
        _Stack,
        record,
    )
    from shardcost.symbolic.dimensions import BY_NAME as DIMENSIONS
    from shardcost.symbolic.dimensions import BYTES_PER_ELEM

    config, ph = result.config, result.phase
    stack = _Stack(config, ph, result.layout, hardware, _given(config, ph, dict(params)))
    pieces, evals = stack.plan()  # the walk again: no evaluation
    if len(pieces) != len(result.components):
        raise AssertionError("the walk does not give the model's components")
    results: dict[int, Any] = {}
    for piece, component in zip(pieces, result.components, strict=True):
        if piece["kind"] == "layer":
            results.setdefault(piece["eval"], component.result)
    if not all(r.inputs.layout.built_in for r in results.values()):
        return None  # a user's layout: its program would outlive the file it came from
    # the config's inputs of each layer: what the engine gives it but the user's counts
    base = {BYTES_PER_ELEM.name: config.bytes_per_elem}
    base |= {k: v for k, v in params.items() if k not in counts}
    sources, stored = _layer_entries(evals, results, config, ph, base)
    records = [record(results[i]) for i in range(len(evals))]
    keys = {k: v for r in records for k, v in r["params"].items()}
    if any(k in DIMENSIONS and k in CONVENTIONS for k in keys):
        raise Unsupported("a parameter both a dimension and a convention")
    for ev, r in zip(stored, records, strict=True):
        ev["hidden"] = sorted(k for k, v in r["params"].items() if _hidden(k, v))
        if any(k in DIMENSIONS and k not in FROM_CONFIG for k in ev["hidden"]):
            raise Unsupported("a count hidden from the parameters in force")
    heads = dict(config.shape).get("num_kv_heads", 1)
    if type(heads) is not int:
        raise Unsupported("num_kv_heads that is not a count")
    view = result.view()
    return {
        "format": FORMAT,
        "programs": sources,
        "evals": stored,
        "pieces": pieces,
        "allowed": sorted(set().union(*(ev["reads"] for ev in stored)) - FROM_CONFIG),
        "ragged": any(ev["ragged"] for ev in stored),
        "max_count": MAX_COUNT,
        "bytes_per_elem": config.bytes_per_elem,
        "num_kv_heads": heads,
        "config_notes": list(config.notes),
        "static": {k: view[k] for k in STATIC_KEYS},
    }


def _layer_entries(
    evals: Sequence[tuple[Any, Any]],
    results: Mapping[int, Any],
    config: Any,
    ph: Any,
    base: Mapping[str, object],
) -> tuple[list[str], list[dict[str, Any]]]:
    """Each distinct layer's program (one source per distinct program) and its entry: the
    program's index, what the config fixes of its inputs, what it reads, whether it shards
    over TP, and the chip figures its vectors' timing reads."""
    from shardcost.codegen.numeric import Unsupported, metrics_source, ragged_source
    from shardcost.formulas.inputs import applicable_params
    from shardcost.formulas.model import chip_figures, part_params
    from shardcost.symbolic.dimensions import BY_NAME as DIMENSIONS
    from shardcost.symbolic.dimensions import TENSOR_PARALLEL

    sources: list[str] = []
    stored = []
    for i, (lay, part) in enumerate(evals):
        res = results[i]
        ragged = res.inputs.ragged is not None  # a layer that reads each request's length
        source = ragged_source(res) if ragged else metrics_source(res)
        if source not in sources:
            sources.append(source)
        offered = part_params(config, lay.layer, part, base)
        every = offered | {k: 1 for k in DIMENSIONS if k not in offered}
        reads = sorted(k for k in applicable_params(lay, ph, every) if k in DIMENSIONS)
        own = {k: offered[k] for k in reads if k in offered}
        if any(type(v) is not int or v < 1 for v in own.values()):
            raise Unsupported("a layer's input from the config that is not a count")
        chip = chip_figures(res.inputs.hardware)
        if chip is not None and not all(isinstance(x, Fraction) for x in chip):
            raise Unsupported("a chip figure that is not exact")
        stored.append(
            {
                "program": sources.index(source),
                "fixed": own,
                "reads": reads,
                "over_tp": TENSOR_PARALLEL in lay.degrees,
                "chip": None if chip is None else [[x.numerator, x.denominator] for x in chip],
                "ragged": ragged,
            }
        )
    return sources, stored


def _check(text: str, counts: Mapping[str, int], result: Any) -> None:
    """The entry must give the engine's answer at the counts just answered, in every
    format; else it is not stored (and, under SHARDCOST_DEBUG, a different answer is an
    error; no answer is the programs' own caution)."""
    from shardcost.codegen.numeric import Unsupported
    from shardcost.reports.tables import model_text

    view = answer(json.loads(text), counts)
    if view is None:  # a program not sure of a number (a whole Fraction, say): unchecked
        raise Unsupported("the stored model does not answer where the engine did")
    engine = {fmt: model_text(result, fmt) for fmt in ("table", "markdown")}
    engine["json"] = json.dumps(result.to_dict(), indent=2) + "\n"
    if all(output(view, fmt) == want for fmt, want in engine.items()):
        return
    if os.environ.get("SHARDCOST_DEBUG"):
        raise AssertionError("the stored model does not answer as the engine did")
    raise Unsupported("the stored model does not answer as the engine did")
