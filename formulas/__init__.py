"""Formulas: primitives, layers, the layout registry, conventions, hardware and timing."""

from . import layers  # noqa: F401  (importing it registers every layer and layout)
from .conventions import CONVENTIONS, Convention, Conventions, Phase
from .evaluate import Metrics, Result, Timing, evaluate
from .hardware import CATALOG, Hardware
from .inputs import KEYS, Inputs, resolve_inputs
from .registry import Layout, all_layouts, get_layout
from .timing import TIMINGS, timing_model

__all__ = [
    "CATALOG",
    "CONVENTIONS",
    "KEYS",
    "TIMINGS",
    "Convention",
    "Conventions",
    "Hardware",
    "Inputs",
    "Layout",
    "Metrics",
    "Phase",
    "Result",
    "Timing",
    "all_layouts",
    "evaluate",
    "get_layout",
    "resolve_inputs",
    "timing_model",
]
