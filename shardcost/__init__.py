"""shardcost: the cost of transformer layers under parallel layouts, derived symbolically.

>>> import shardcost
>>> m = shardcost.metrics("tp", phase="decode", hidden_size=1024, num_heads=16,
...                       head_dim=64, batch_size=2, past_seq_len=128,
...                       tensor_parallel=4, kv_includes_new_token=True)
>>> m["metrics"]["flops_per_chip"]
4458496
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

# In a source checkout the engine folders (symbolic/, formulas/ ...) sit beside this one;
# setuptools maps them into this namespace on install. Let `python -m shardcost` and
# `python -m pytest` run from the checkout too.
_checkout = Path(__file__).resolve().parent.parent
if (_checkout / "symbolic" / "__init__.py").is_file() and not (
    Path(__file__).resolve().parent / "symbolic"
).exists():
    __path__.append(str(_checkout))

from .errors import (  # noqa: E402
    ImpossibleSplitError,
    InputError,
    InternalError,
    InvalidValueError,
    ShardcostError,
    UnevenSplitWarning,
    UnknownNameError,
)
from .formulas import Layout, all_layouts, evaluate, get_layout, resolve_inputs  # noqa: E402
from .formulas.cases import SPEC_CASES, SpecCase  # noqa: E402
from .formulas.conventions import Conventions  # noqa: E402
from .formulas.conventions import convention as _convention  # noqa: E402
from .formulas.conventions import phase as _phase  # noqa: E402
from .formulas.inputs import choose_conventions  # noqa: E402
from .formulas.invariants import LayoutVerification  # noqa: E402
from .formulas.user import define_layout, load_layout  # noqa: E402
from .formulas.verification import verify as _verify  # noqa: E402

_BACKENDS = ("python", "numba")
from .symbolic import Cost  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "Cost",
    "ImpossibleSplitError",
    "InputError",
    "InternalError",
    "InvalidValueError",
    "Layout",
    "LayoutVerification",
    "ShardcostError",
    "SpecCase",
    "UnevenSplitWarning",
    "UnknownNameError",
    "__version__",
    "compile",
    "cost",
    "define_layout",
    "export",
    "kv_tier",
    "layouts",
    "load_layout",
    "metrics",
    "model_metrics",
    "spec_cases",
    "verify",
]


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
    chosen = get_layout(layout, layer)
    ph = _phase(phase)
    for key in conventions:
        _convention(key)
    return chosen.cost(ph, choose_conventions(chosen, ph, conventions))


def layouts(layer: str | None = None) -> tuple[Layout, ...]:
    """Every registered layout (of one layer, when given)."""
    return all_layouts(layer)


def spec_cases() -> tuple[SpecCase, ...]:
    """The seed documents' test cases, each with its expected values."""
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
) -> Any:
    """``layout`` in ``phase`` as a fast function, compiled once and cached.

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

    chosen = get_layout(layout, layer)
    if backend == "python":
        return compile_layout(chosen, _phase(phase), timing)
    if backend == "numba":
        if timing:
            raise InputError(
                "the numba back end computes the nine metrics; timing=True needs backend='python'"
            )
        return fast_layout(chosen, _phase(phase))
    raise UnknownNameError(f"backend={backend!r} is unknown; backends: {', '.join(_BACKENDS)}")


def export(language: str, directory: str | Path, **conventions: Any) -> list[Path]:
    """Write every layout's metrics as ``language`` source into ``directory/<language>/``,
    with a dispatcher and run.sh; the paths written."""
    from .codegen.export import export as _export

    chosen = {name: _convention(name).parse(value) for name, value in conventions.items()}
    return _export(language, Path(directory), conventions=Conventions(**chosen))
