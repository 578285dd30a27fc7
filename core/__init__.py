"""Tailor's torch-free core: everything several packages must agree on.

The operator catalog (specs, genes, exact costs), the genome and its search space,
variation (mutation, crossover, repair), presets, the metric grammar, the job spec (one
definition of every evolution, training and profiling setting), the wire protocol between
the API and the device agents, and the ONNX manifest model. Depends on pydantic and numpy
only, so the API, the agents and the workers all import the same definitions.
See docs/architecture.md for the map.
"""

from .genome import FORMAT, Genome, GenomeError, Slot
from .presets import PRESETS, preset
from .space import SearchSpace
from .variation import crossover, mutate, repair, sample

__all__ = [
    "FORMAT",
    "Genome",
    "GenomeError",
    "Slot",
    "SearchSpace",
    "crossover",
    "mutate",
    "repair",
    "sample",
    "PRESETS",
    "preset",
]
