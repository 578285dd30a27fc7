"""The search algorithms a job may name, with what each does (torch-free).

The job spec validates `evolution.algorithm` against this table, the API documents it, and
the orchestrator's registry (`orchestrator/search/algorithms/`) holds one implementation file
per name; a test checks the two agree, so adding an algorithm is its file plus its line here.
`DEFAULT_ALGORITHM` is what the search benchmark (`bench/results/search.json`) shows best.
"""

from __future__ import annotations

ALGORITHMS: dict[str, str] = {
    "random": "uniform samples of the search space at the same budget; no selection",
    "nsga2": "NSGA-II: tournament, crossover and mutation, rank-and-crowding survival",
    "prescreen": "NSGA-II that breeds `pool_factor` times the offspring it evaluates (plus "
    "the ends of a walk along the exact static objectives' front) and keeps those best on the "
    "exact static objectives (rank, then crowding); no learned model",
    "surrogate": "NSGA-II whose offspring are picked from the same bred pool by predicted "
    "hypervolume improvement (a Gaussian process per measured objective)",
}
DEFAULT_ALGORITHM = "surrogate"
