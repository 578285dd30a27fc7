"""Genomes: the integer-coded architecture, its JSON twin, search spaces, operators, presets.

Pure Python (imports no torch or Ray) so the API can validate what users submit.
"""

from .genome import FORMAT, Genome, GenomeError, Slot
from .operators import crossover, mutate, repair
from .presets import PRESETS, preset
from .space import SearchSpace

__all__ = ["FORMAT", "Genome", "GenomeError", "Slot", "SearchSpace", "crossover", "mutate",
           "repair", "PRESETS", "preset"]
