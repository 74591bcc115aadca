"""The engine: dimensions and notation, the Cost record, derivation traces, simplification."""

from .cost import METRICS, PER_CHIP, Collective, Cost, collective, finish, over_group
from .dimensions import DIMENSIONS, Dimension, dimension
from .simplify import closed_form
from .trace import Derivation, Requirement, Split, Step, Trace

__all__ = [
    "DIMENSIONS",
    "METRICS",
    "PER_CHIP",
    "Collective",
    "Cost",
    "Derivation",
    "Dimension",
    "Requirement",
    "Split",
    "Step",
    "Trace",
    "closed_form",
    "collective",
    "dimension",
    "finish",
    "over_group",
]
