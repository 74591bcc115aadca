"""``shardcost kv-tier`` without SymPy, for ragged decode batches: the engine's models and
each request's cache alone, from stored programs, through ``shardcost.kv_tiers``.

After the engine answered ``kv-tier CONFIG --hardware H past_seq_len=L1,L2,...`` once,
``store_kv`` writes one cache entry for the config file's bytes, the chip, the host
memory, the layout and the parameters that are not counts (conventions): the decode
batch as a whole model whose mixers are ragged programs (``codegen.numeric.ragged_source``,
``numeric_model``), the fresh prefill as a whole model, which evaluations are mixers,
and each mixer's chip figures for decode attention. ``run_kv`` answers a later call with
other lengths or other counts from it: the same ``kv_tiers`` lines over the programs'
numbers, so the engine's answer byte for byte, or none (then the engine answers). An
entry is stored only if it gives the engine's answer at the call just answered.

A batch of one past length, a ``bytes_per_elem`` given (the peak its compute type picks
would move), a hardware file or field, and anything a program is not sure of go to the
engine.

Standard library only on the fast path.
"""

# open(), not pathlib: the fast path keeps its cold start short

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from fractions import Fraction
from typing import Any

from shardcost import cache, kv_tiers
from shardcost.numeric import _INTEGER, _scan, attempt
from shardcost.numeric_model import (
    LENGTHS,
    MAX_REQUESTS,
    _config_path,
    _Programs,
    answer,
    config_entry,
)

KIND = "kv"
FORMAT = 1  # bump when the entry's layout changes
_OPTIONS = ("--hardware", "--host-memory", "--layout", "--format", "-o", "--output")
_FORMATS = ("table", "json", "markdown")


def _parse(argv: Sequence[str]) -> dict[str, Any] | None:
    """``kv-tier CONFIG --hardware H [--host-memory M] [--layout L] [--format F]
    [-o FILE] KEY=VALUE...`` with a ragged ``past_seq_len``, or None."""
    if len(argv) < 2 or argv[0] != "kv-tier":
        return None
    scanned = _scan(argv[1:], _OPTIONS)
    if scanned is None or len(scanned[1]) != 1:
        return None
    opts, (config,), assignments = scanned
    hardware = opts.get("--hardware")
    if hardware is None or hardware.endswith(".toml") or "/" in hardware:
        return None
    memory = opts.get("--host-memory", "pinned")
    fmt = opts.get("--format", "table")
    if memory not in kv_tiers.HOST_MEMORY or fmt not in _FORMATS:
        return None
    if "-o" in opts and "--output" in opts:
        return None
    output = opts.get("-o", opts.get("--output"))
    counts: dict[str, Any] = {}
    fixed: list[list[str]] = []
    for key, text in assignments:
        if key == "past_seq_len":
            if not LENGTHS.fullmatch(text) or text.count(",") >= MAX_REQUESTS:
                return None
            counts[key] = tuple(int(t) for t in text.split(","))
        elif _INTEGER.fullmatch(text):
            counts[key] = int(text)
        else:
            fixed.append([key, text])
    if "past_seq_len" not in counts or "bytes_per_elem" in counts or output == "":
        return None
    return {
        "config": config,
        "hardware": hardware,
        "memory": memory,
        "layout": opts.get("--layout", "single"),
        "format": fmt,
        "output": output,
        "counts": counts,
        "fixed": sorted(fixed),
        "assignments": [f"{k}={v}" for k, v in assignments],
    }


def kv_key(path: str, digest: str, args: Mapping[str, Any]) -> str:
    """The cache key of a kv-tier entry: the config (path and bytes), the chip, the host
    memory, the layout and the parameters that are not counts."""
    what = [path, digest, args["hardware"], args["memory"], args["layout"], args["fixed"]]
    return cache.key("kv-tier", json.dumps(what))


def run_kv(argv: Sequence[str]) -> tuple[str, list[str]] | None:
    """What ``shardcost kv-tier ...`` prints, from a cached entry, or None."""
    args = _parse(argv)
    if args is None:
        return None
    text = config_entry(KIND, args["config"], lambda path, digest: kv_key(path, digest, args))
    if text is None:
        return None
    try:
        view = tier(json.loads(text), args["counts"])
        if view is None:
            return None
        return output(view, args)
    except Exception:  # a damaged entry, or a value a program cannot take: the engine
        return None


def try_kv(argv: Sequence[str]) -> int | None:
    """Print ``shardcost kv-tier ...`` from a cached entry and return 0, or None."""
    return attempt(run_kv, argv)


def output(view: Mapping[str, Any], args: Mapping[str, Any]) -> tuple[str, list[str]]:
    """What the command prints of ``view``: stdout, and the lines for stderr (``-o FILE``
    written as the engine writes it; a refusal or a failure goes to the engine)."""
    if args["format"] == "json":
        text = json.dumps(kv_tiers.tier_json(view), indent=2) + "\n"
    else:
        text = kv_tiers.tier_text(view, args["format"])
    if args.get("output") is None:
        return text, []
    from pathlib import Path

    from shardcost.files import write_output

    return "", [write_output(Path(args["output"]), text, [Path(args["config"])])]


def _fraction(pair: Sequence[int]) -> Fraction:
    return Fraction(int(pair[0]), int(pair[1]))


def tier(entry: Mapping[str, Any], counts: Mapping[str, Any]) -> dict[str, Any] | None:
    """The KV-tier view (``kv_tiers.tier_view``) at ``counts`` from a stored entry, or
    None where a program is not sure or the engine reads the counts otherwise."""
    if entry.get("format") != FORMAT:
        return None
    lengths = counts["past_seq_len"]
    decode = answer(
        entry["decode"], {k: v for k, v in counts.items() if k not in entry["not_read"]["decode"]}
    )
    prefill = answer(
        entry["prefill"],
        {k: v for k, v in counts.items() if k not in entry["not_read"]["prefill"]},
    )
    if decode is None or prefill is None:
        return None
    p = kv_tiers.pace(decode, prefill, entry["num_layers"])
    evals = entry["decode"]["evals"]
    programs = _Programs(entry["decode"]["programs"])
    mixers = {int(i): f for i, f in entry["mixers"]}
    found = [
        (r["eval"], r["count"])
        for r in decode["components"]
        if r["block"] >= 0 and r["eval"] in mixers
    ]
    if not found:
        return None
    latency, host = _fraction(entry["latency_ms"]), _fraction(entry["host"])
    requests = []
    for length in dict.fromkeys(lengths):
        alone = []
        for i, n in found:
            ev = evals[i]
            given = {k: v for k, v in (ev["fixed"] | dict(counts)).items() if k in ev["reads"]}
            given = {k: v for k, v in given.items() if k not in ("batch_size", "past_seq_len")}
            one = programs(ev["program"]).__globals__["alone"](given, length)
            if one is None:
                return None
            figures = tuple(_fraction(x) for x in mixers[i])
            alone.append((one[0], one[1], figures, n))
        requests.append(kv_tiers.request(length, alone, latency, host, p))  # type: ignore[arg-type]
    return kv_tiers.tier_view(
        model=entry["model"],
        layout=entry["layout"],
        hardware=entry["hardware"],
        host_memory=entry["host_memory"],
        bandwidth=_fraction(entry["bandwidth"]),
        efficiency=_fraction(entry["efficiency"]),
        decode=decode,
        seq_len=int(prefill["params"]["seq_len"]),
        p=p,
        requests=requests,
    )


# ------------------------------------------------------------ storing (after the engine)


def store_kv(args: Any, result: Any, digest: str | None) -> None:
    """After the engine answered ``kv-tier`` (``args``: argparse's namespace) with
    ``result`` (``formulas.kv_tier.KVTier``): write the entry for next time, when the
    call is one the programs can take and the entry gives the same answer."""
    from shardcost.codegen.numeric import Unsupported

    try:
        _store(args, result, digest)
    except Unsupported:
        return  # something the exact printer does not print: the engine keeps answering
    except Exception:
        if os.environ.get("SHARDCOST_DEBUG"):
            raise  # the answer is printed already; an entry we cannot write is a bug


def _plain(value: Fraction) -> list[int]:
    return [value.numerator, value.denominator]


def _store(namespace: Any, result: Any, digest: str | None) -> None:
    from shardcost.codegen.numeric import Unsupported
    from shardcost.formulas.kv_tier import _NOT_READ, _one_request, figures
    from shardcost.formulas.registry import Role, get_layer
    from shardcost.numeric_model import _entry
    from shardcost.reports.tables import kv_tier_text

    words = ["kv-tier", str(namespace.config), "--hardware", str(namespace.hardware)]
    words += ["--host-memory", namespace.host_memory, "--layout", namespace.layout]
    args = _parse([*words, *namespace.assignments])
    if args is None or digest is None or not cache.enabled() or result.prefill is None:
        return
    path = _config_path(args["config"])
    if path is None:
        return
    params = dict(a.partition("=")[::2] for a in namespace.assignments)
    counts = args["counts"]
    models = {}
    for name, model in (("decode", result.decode), ("prefill", result.prefill)):
        skip = {str(k) for k in _NOT_READ[model.phase]}
        mine = {k: v for k, v in params.items() if k not in skip}
        found = _entry(
            model, args["hardware"], mine, {k: v for k, v in counts.items() if k in mine}
        )
        if found is None:
            return
        models[name] = found
    hw = result.hardware
    mixers: list[list[Any]] = []
    pieces = models["decode"]["pieces"]  # the walk, one piece per component
    for piece, component in zip(pieces, result.decode.components, strict=True):
        if piece["kind"] != "layer" or piece["block"] < 0 or component.result is None:
            continue
        if get_layer(component.result.inputs.layout.layer).role is not Role.MIXER:
            continue
        if any(i == piece["eval"] for i, _ in mixers):
            continue
        one = _one_request(component.result.inputs, counts["past_seq_len"][0])
        mixers.append([piece["eval"], [_plain(Fraction(x)) for x in figures(one, hw)]])
    assert hw.host_link_bandwidth_gb_s is not None
    entry = {
        "format": FORMAT,
        "decode": models["decode"],
        "prefill": models["prefill"],
        "not_read": {
            "decode": sorted(str(k) for k in _NOT_READ[result.decode.phase]),
            "prefill": sorted(str(k) for k in _NOT_READ[result.prefill.phase]),
        },
        "num_layers": result.decode.config.num_layers,
        "mixers": mixers,
        "latency_ms": _plain(Fraction(hw.copy_latency_us(result.host_memory)) / 1000),
        "host": _plain(Fraction(hw.host_link_bandwidth_gb_s) * Fraction(result.efficiency)),
        "bandwidth": _plain(Fraction(hw.host_link_bandwidth_gb_s)),
        "efficiency": _plain(Fraction(result.efficiency)),
        "model": result.config.name,
        "layout": result.layout,
        "hardware": hw.name,
        "host_memory": result.host_memory,
    }
    text = json.dumps(entry)
    stored = json.loads(text)
    view_back = tier(stored, counts)
    if view_back is None:
        raise Unsupported("the stored kv-tier does not answer where the engine did")
    engine = {fmt: kv_tier_text(result, fmt) for fmt in ("table", "markdown")}
    engine["json"] = json.dumps(result.to_dict(), indent=2) + "\n"
    for fmt, want in engine.items():
        got = output(view_back, {"format": fmt, "output": None})[0]
        if got != want:
            if os.environ.get("SHARDCOST_DEBUG"):
                raise AssertionError(
                    f"the stored kv-tier does not answer as the engine did ({fmt})"
                )
            return
    cache.write(KIND, kv_key(path, digest, args), text, ".json")
