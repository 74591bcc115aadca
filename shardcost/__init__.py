"""shardcost: the cost of transformer layers under parallel layouts, derived symbolically.

>>> import shardcost
>>> m = shardcost.metrics("tp", phase="decode", hidden_size=1024, num_heads=16,
...                       head_dim=64, batch_size=2, past_seq_len=128,
...                       tensor_parallel=4, kv_includes_new_token=True)
>>> m["metrics"]["flops_per_chip"]
4458496

``import shardcost`` is cheap: it loads the error classes and nothing else. The engine
(SymPy, the formulas, code generation, reports) is imported when a function needs it,
and the names re-exported from it on first access.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import (
    ImpossibleSplitError,
    InputError,
    InternalError,
    InvalidValueError,
    PrecisionWarning,
    ShardcostError,
    UnevenSplitWarning,
    UnknownNameError,
    WideCountWarning,
)

if TYPE_CHECKING:
    from .codegen.printers import UnsupportedNode
    from .formulas.cases import SpecCase
    from .formulas.invariants import LayoutVerification
    from .formulas.registry import Layout
    from .formulas.user import define_layout, load_layout
    from .symbolic import Cost
    from .symbolic.parse import ExpressionError

# In a source checkout the engine folders (symbolic/, formulas/ ...) sit beside this one;
# setuptools maps them into this namespace on install. Let `python -m shardcost` and
# `python -m pytest` run from the checkout too.
_checkout = Path(__file__).resolve().parent.parent
if (_checkout / "symbolic" / "__init__.py").is_file() and not (
    Path(__file__).resolve().parent / "symbolic"
).exists():
    __path__.append(str(_checkout))

__all__ = [
    "Cost",
    "ExpressionError",
    "ImpossibleSplitError",
    "InputError",
    "InternalError",
    "InvalidValueError",
    "Layout",
    "LayoutVerification",
    "PrecisionWarning",
    "ShardcostError",
    "SpecCase",
    "UnevenSplitWarning",
    "UnknownNameError",
    "UnsupportedNode",
    "WideCountWarning",
    "__version__",
    "compile",
    "compile_model",
    "cost",
    "crossover",
    "define_layout",
    "export",
    "kv_tier",
    "layouts",
    "load_layout",
    "metrics",
    "model_metrics",
    "plan",
    "spec_cases",
    "verify",
]

# Public names defined in the engine, imported on first access: name -> its module.
_LAZY = {
    "Cost": ".symbolic",
    "ExpressionError": ".errors",
    "Layout": ".formulas",
    "LayoutVerification": ".formulas.invariants",
    "SpecCase": ".formulas.cases",
    "UnsupportedNode": ".errors",
    "define_layout": ".formulas.user",
    "load_layout": ".formulas.user",
}
# Sub-packages reachable as attributes (``shardcost.formulas``) without an import.
_SUBPACKAGES = ("cli", "codegen", "formulas", "reports", "symbolic")
_BACKENDS = ("python", "numba")


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
    elif name == "__version__":
        value = _version()
    elif name in _SUBPACKAGES:
        return importlib.import_module(f".{name}", __name__)  # the import binds it here
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value  # resolved once
    return value


def __dir__() -> list[str]:
    return sorted({*__all__, *(name for name in globals() if name.startswith("__"))})


def _version() -> str:
    """The installed distribution's version; "0+unknown" when shardcost is not installed
    (a source checkout on ``sys.path``)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("shardcost")
    except PackageNotFoundError:
        return "0+unknown"


def metrics(
    layout: str,
    phase: str = "prefill",
    *,
    layer: str = "attention",
    hardware: str | None = None,
    **params: Any,
) -> dict[str, Any]:
    """The cost of ``layout`` in ``phase``: the JSON object of DESIGN.md as a dict.

    ``params`` are dimensions (``hidden_size=4096`` ...), conventions
    (``kv_includes_new_token=True`` ...) and hardware fields (``peak_tflops=989`` ...).
    Metrics are exact ints; ``timing`` (ms, floats) appears when hardware is given, by
    catalog name or as fields. Bad input raises InputError; an uneven split warns
    (UnevenSplitWarning) that per-chip metrics describe the busiest chip.

    In decode ``past_seq_len`` may be a list, one past length per request (a ragged
    batch; ``batch_size`` defaults to its length): every length-dependent quantity is a
    sum over the requests, and the dict gains ``ragged`` (the lengths, their mean and max,
    max_over_mean, and the metrics a batch × longest model would give).
    """
    import warnings

    from .formulas import evaluate, resolve_inputs

    result = evaluate(resolve_inputs(layout, phase, layer=layer, hardware=hardware, params=params))
    for note in result.notes:
        warnings.warn(note, UnevenSplitWarning, stacklevel=2)
    return result.to_dict()


def model_metrics(
    config: str | Path | Mapping[str, Any],
    phase: str = "prefill",
    *,
    layout: str = "single",
    hardware: str | None = None,
    **params: Any,
) -> dict[str, Any]:
    """A whole model from a local Hugging Face config.json (a path, or the parsed dict).

    ``layout`` is the attention layout; the FFN and vocabulary layers shard the same way.
    ``params`` are the dimensions the config does not fix (``batch_size``, ``seq_len``,
    ``past_seq_len`` ...), conventions and hardware fields. The dict holds ``parameters``
    (exact counts), ``metrics`` (the model, per chip and total), ``per_layer``,
    ``components``, ``memory`` (and whether it fits, with hardware) and ``timing``.
    """
    from .formulas.model import model_metrics as _model_metrics

    result = _model_metrics(config, phase, layout=layout, hardware=hardware, params=params)
    return result.to_dict()


def compile_model(
    config: str | Path | Mapping[str, Any],
    phase: str = "prefill",
    *,
    layout: str = "single",
    hardware: str | None = None,
    **params: Any,
) -> Any:
    """A whole model compiled once, to call with the dimensions that vary.

        f = shardcost.compile_model("llama-3.1-8b.json", "decode", layout="tp",
                                    hardware="h100-sxm", tensor_parallel=8)
        f(batch_size=16, past_seq_len=4096)["timing"]["wall_clock_time_ms"]

    Takes what ``model_metrics`` takes; ``params`` (dimensions, conventions, hardware
    fields) are fixed when built. The callable takes dimensions as Python ints (those
    its layers read: ``f.dimensions``) and returns ``chips``, ``metrics``,
    ``per_layer``, ``memory`` and, with hardware, ``timing``: what ``model_metrics``
    gives under those keys. Metrics are exact and equal; timings are float64 sums within a
    few ulps of its exactly rounded ones. Each layer runs through its layout's compiled
    function (``shardcost.compile``), a few microseconds a call. One past_seq_len per
    call: a ragged batch goes through ``model_metrics``.
    """
    from .formulas.model import compile_model as _compile_model

    return _compile_model(config, phase, layout=layout, hardware=hardware, params=params)


def plan(
    config: str | Path | Mapping[str, Any],
    *,
    hardware: str,
    chips: int | None = None,
    plan: str | None = None,
    prompt: int = 2048,
    output: int = 256,
    concurrency: int = 1,
    max_tpot_ms: float | None = None,
    max_ttft_ms: float | None = None,
    min_context: int = 0,
    reserve: float | str = "0.1",
    interleaved: bool = False,
    **params: Any,
) -> dict[str, Any]:
    """Place a model on chips, for a workload of ``concurrency`` requests of ``prompt`` +
    ``output`` tokens.

    With ``chips``: every plan (tensor, context, expert, pipeline, data parallel degrees
    whose product is ``chips``) evaluated; the dict holds what was tried and dropped (and
    why), the Pareto ``front`` of tokens/s per chip against TPOT and the ``best`` plan per
    objective, within the limits. With ``plan`` (``"tp=8,pp=2,ep=8"``): that plan's
    layouts, ``memory`` per chip, ``pipeline`` and ``serving`` figures. ``params`` are
    conventions, element types and hardware fields.
    """
    from .formulas.plan import Limits, Workload, plan_model, reserve_fraction, search

    work = Workload(prompt, output, concurrency)
    fraction = reserve_fraction(reserve)
    if (chips is None) == (plan is None):
        raise InputError("give chips=N to search every plan, or plan='tp=8,...' for one")
    if plan is not None:
        return plan_model(config, plan, hardware, work, reserve=fraction, params=params).to_dict()
    limits = Limits(max_tpot_ms, max_ttft_ms, min_context)
    found = search(
        config,
        chips,  # type: ignore[arg-type]
        hardware,
        work,
        limits=limits,
        reserve=fraction,
        params=params,
        interleaved=interleaved,
    )
    return found.to_dict()


def kv_tier(
    config: str | Path | Mapping[str, Any],
    *,
    hardware: str,
    host_memory: str = "pinned",
    layout: str = "single",
    **params: Any,
) -> dict[str, Any]:
    """Each request's KV cache brought from host memory over the host link.

    ``params`` describe the decode batch (``past_seq_len=[4096, 64]`` ...) and the prefill
    whose work may hide the copy (``seq_len``). Per request: the copy time (whole cache
    and one layer), decode attention time over the same cache, their ratio, and the decode
    layers, decode steps and prefill tokens that cover the copy.
    """
    from .formulas.kv_tier import kv_tier as _kv_tier

    tier = _kv_tier(
        config, hardware=hardware, host_memory=host_memory, layout=layout, params=params
    )
    return tier.to_dict()


def cost(
    layout: str, phase: str = "prefill", *, layer: str = "attention", **conventions: Any
) -> Cost:
    """The symbolic Cost of ``layout`` in ``phase`` under the given conventions."""
    from .formulas.conventions import convention
    from .formulas.conventions import phase as as_phase
    from .formulas.inputs import choose_conventions
    from .formulas.registry import get_layout

    chosen = get_layout(layout, layer)
    ph = as_phase(phase)
    for key in conventions:
        convention(key)
    return chosen.cost(ph, choose_conventions(chosen, ph, conventions))


def crossover(
    a: str,
    b: str | None = None,
    *,
    metric: str | None = None,
    solve_for: str,
    layer: str = "attention",
    phase: str = "prefill",
    hardware: str | None = None,
    **params: Any,
) -> dict[str, Any]:
    """The value of ``solve_for`` (a dimension) at which ``a`` and ``b`` tie, in closed form.

    ``a`` and ``b`` are layouts of ``layer`` compared on ``metric`` (one of the nine, or
    with hardware a timing such as ``wall_clock_time_ms``), or a layout's derivation steps
    ``"single:scores"``, ``"single:q_proj+k_proj"``. ``b`` None: ``a``'s ridge point, where
    its compute time equals its load time (hardware needed). ``params`` fix the other
    dimensions, conventions and hardware fields; the rest take their defaults.

    The dict (the JSON of ``shardcost crossover``) holds ``verdict`` (tie, never,
    independent, identical), ``summary``, ``difference`` (A − B as text and LaTeX, and at
    the values given), ``ratio`` when constant, and ``roots``: each exact (``exact``,
    ``value``), in the remaining symbols (``closed_form``, ``closed_form_latex``), its
    ``regime`` in words, the first whole value at or after which the order flips
    (``whole``), and ``checks``: both sides evaluated there (and just before) by the
    library.
    """
    from .formulas.crossover import crossover as _crossover

    result = _crossover(
        a,
        b,
        metric=metric,
        solve_for=solve_for,
        layer=layer,
        phase_name=phase,
        hardware=hardware,
        params=params,
    )
    return result.to_dict()


def layouts(layer: str | None = None) -> tuple[Layout, ...]:
    """Every registered layout (of one layer, when given)."""
    from .formulas import all_layouts

    return all_layouts(layer)


def spec_cases() -> tuple[SpecCase, ...]:
    """The seed documents' test cases, each with its expected values."""
    from .formulas.cases import SPEC_CASES

    return SPEC_CASES


def verify(
    *layouts: str,
    layer: str | None = None,
    phase: str | None = None,
    every_convention: bool = False,
    **conventions: Any,
) -> tuple[LayoutVerification, ...]:
    """Prove (or check at points) every invariant of the named layouts (default: every
    layout, or every one of ``layer``; names are looked up in ``layer``, attention by default).

    Each result has ``ok`` and ``verdicts`` (status "proved", "checked" or "failed",
    with the residual and a counterexample on failure). ``conventions`` fix convention
    values; ``every_convention`` verifies every combination instead. User layouts made
    with ``define_layout`` or ``load_layout`` are verified by name like built-ins.
    """
    from .formulas.registry import get_layout
    from .formulas.verification import verify as _verify

    chosen = [get_layout(name, layer or "attention") for name in layouts] or None
    return _verify(
        chosen,
        phases=None if phase is None else [phase],
        conventions=conventions,
        every_convention=every_convention,
        layer=layer,
    )


def compile(
    layout: str,
    phase: str = "prefill",
    *,
    layer: str = "attention",
    timing: bool = False,
    backend: str = "python",
    conventions: Mapping[str, Any] | None = None,
    hardware: str | None = None,
) -> Any:
    """``layout`` in ``phase`` as a fast function, compiled once and cached.

    ``hardware`` (a catalog name or FILE.toml) implies ``timing``: the function's hardware
    fields and supports_overlap then default to that chip's, as ``metrics`` sees it for
    this layer (its kernel class folded in; the FP8 peak when the operands take one
    byte); a keyword given still wins.

    ``conventions`` fixes the static conventions (element types, windows, MoE and MLA
    choices; with ``timing``, how collectives run and hide: ``collective_algorithm`` ...)
    for this function; the others are switches it takes when called.

    Call it with dimensions, conventions (and, with ``timing``, hardware fields and
    supports_overlap) as keywords; missing ones take their defaults. Python ints in:
    exact ints out, on a pure-Python path. Arrays in: float64 numpy arrays out,
    broadcast; float64 is exact while every intermediate value stays below 2^53, and a
    PrecisionWarning says when one reaches it; ``exact=True`` gives object arrays of
    Python ints instead. The generated source is in ``f.__source__``.

    ``backend="numba"`` (``pip install 'shardcost[fast]'``) returns a parallel loop
    ``f(out=..., ok=..., **arrays)`` filling a caller-allocated 9 × n int64 array; a
    configuration with a value past 2^63 gets ``ok`` False and a PrecisionWarning.
    """
    from .codegen.compiled import compile_layout
    from .codegen.fast import fast_layout
    from .codegen.python import fixed_conventions
    from .formulas.conventions import phase as as_phase
    from .formulas.registry import get_layout

    chosen = get_layout(layout, layer)
    ph = as_phase(phase)
    timing = timing or hardware is not None
    fixed = fixed_conventions(chosen, ph, conventions or {}, timing)
    if backend == "python":
        compiled = compile_layout(chosen, ph, timing, fixed)
        return compiled if hardware is None else _on_chip(compiled, chosen, hardware, fixed)
    if backend == "numba":
        if timing:
            raise InputError(
                "the numba back end computes the nine metrics; timing=True needs backend='python'"
            )
        return fast_layout(chosen, ph, fixed)
    raise UnknownNameError(f"backend={backend!r} is unknown; backends: {', '.join(_BACKENDS)}")


def _on_chip(compiled: Any, layout: Any, name: str, fixed: Any) -> Any:
    """``compiled`` with its hardware keywords defaulting to the chip ``name``'s."""
    from .formulas.dtypes import compute_bytes
    from .formulas.hardware import NUMERIC_FIELDS, PEAK_TFLOPS, kernel_class
    from .formulas.inputs import _hardware

    hw = _hardware(name, {})
    assert hw is not None
    hw = hw.for_class(kernel_class(layout.layer))
    static = _Static(dict(fixed))
    base: dict[str, Any] = {f.name: float(getattr(hw, f.name)) for f in NUMERIC_FIELDS}
    base["supports_overlap"] = hw.supports_overlap

    def on_chip(**kwargs: Any) -> Any:
        b = kwargs.get("bytes_per_elem", 2)
        defaults = dict(base)
        if isinstance(b, int) and not isinstance(b, bool):  # the peak the element type uses
            defaults[PEAK_TFLOPS.name] = float(hw.peak_for(compute_bytes(static, b)))
        return compiled(**(defaults | kwargs))

    on_chip.__source__ = getattr(compiled, "__source__", "")  # type: ignore[attr-defined]
    on_chip.__doc__ = f"{compiled.__doc__ or ''}\n\nOn {hw.name}: hardware fields default to its."
    return on_chip


class _Static:
    """The element types fixed at build, as ``compute_bytes`` reads conventions."""

    def __init__(self, fixed: dict[str, Any]) -> None:
        self.__dict__.update(fixed)


def export(language: str, directory: str | Path, **conventions: Any) -> list[Path]:
    """Write every layout's metrics as ``language`` source into ``directory/<language>/``,
    with a dispatcher and run.sh; the paths written."""
    from .codegen.export import export as _export
    from .formulas.conventions import Conventions, convention

    chosen = {name: convention(name).parse(value) for name, value in conventions.items()}
    return _export(language, Path(directory), conventions=Conventions(**chosen))
