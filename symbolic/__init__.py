"""The engine: dimensions and notation, the Cost record, derivation traces, simplification."""

from .cost import (
    METRICS,
    PER_CHIP,
    Collective,
    CollectiveKind,
    CollectiveSpec,
    Cost,
    collective,
    finish,
    over_group,
)
from .dimensions import DIMENSIONS, Dimension, dimension
from .divides import Divides
from .relation import Product
from .simplify import closed_form
from .trace import Derivation, Requirement, Section, Split, Step, StepSpec, Trace

__all__ = [
    "DIMENSIONS",
    "METRICS",
    "PER_CHIP",
    "Collective",
    "CollectiveKind",
    "CollectiveSpec",
    "Cost",
    "Derivation",
    "Dimension",
    "Divides",
    "Product",
    "Requirement",
    "Section",
    "Split",
    "Step",
    "StepSpec",
    "Trace",
    "closed_form",
    "collective",
    "dimension",
    "finish",
    "over_group",
]
