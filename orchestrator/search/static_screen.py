"""Exact static metrics as a screen: which genomes break a static constraint (free to know,
so never worth an evaluation), and how static values enter the models' space."""

from __future__ import annotations

import numpy as np

from core import Genome
from core.metrics import Constraint, parse_metric, static_metrics

UNIT_FRACTION = 0.01  # a static metric's unit: 1 % of its median non-zero value


def is_static(metric: str) -> bool:
    """Exact static metrics (params, cache_bytes@L, flops@L): computed, never predicted."""
    return parse_metric(metric).kind == "static"


def statically_feasible(pool: list[Genome], constraints: list[Constraint]) -> list[int]:
    """Indices of `pool` that meet every constraint on an exact static metric."""
    static = [c for c in constraints if is_static(c.metric)]
    names = [c.metric for c in static]
    return [
        i
        for i, g in enumerate(pool)
        if all(c.violation(static_metrics(g.to_json(), names)) == 0 for c in static)
    ]


def static_scale(values: np.ndarray) -> np.ndarray:
    """log1p(value / unit), unit = 1 % of the median non-zero value of the same data.

    A plain log sends a zero (a genome with no decode cache: all convolutions with no state,
    or no layer that keeps one) 27 orders of magnitude below the smallest non-zero value and
    makes it a lone extreme the models chase; log1p over a unit keeps zero at 0, the median at
    log(101) ~ 4.6 and a value 100x smaller than the median at log(2) ~ 0.7, so zero is
    neither rewarded nor hidden, and ratios between large values stay ratios."""
    values = np.asarray(values, dtype=float)
    positive = values[values > 0]
    if positive.size == 0:
        return np.zeros_like(values)
    unit = UNIT_FRACTION * float(np.median(positive))
    return np.log1p(np.maximum(values, 0.0) / unit)
