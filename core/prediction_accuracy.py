"""How good a predictor is: Kendall's tau and the median absolute percentage error between
what was predicted for candidates before they were evaluated and what was then measured.

One definition for the search's generation stats (orchestrator) and the fleet latency model
endpoint (api). scipy computes tau; it is imported only when this is called, so `core`
itself stays pydantic/numpy-only.
"""

from __future__ import annotations

import math

import numpy as np


def accuracy(pairs: list[tuple[float, float]]) -> dict[str, float | int | None]:
    """(predicted, measured) pairs -> {"n", "kendall_tau", "mdape", "within_10"} (the share
    within +-10 %); tau needs 2 pairs."""
    usable = [(p, m) for p, m in pairs if math.isfinite(p) and math.isfinite(m) and m != 0]
    if not usable:
        return {"n": 0, "kendall_tau": None, "mdape": None, "within_10": None}
    predicted, measured = np.array(usable, dtype=float).T
    errors = np.abs(predicted - measured) / np.abs(measured)
    mdape = float(np.median(errors))
    tau = None
    if len(usable) >= 2:
        from scipy.stats import kendalltau

        value = kendalltau(predicted, measured).statistic
        tau = None if not math.isfinite(value) else float(value)
    within = float(np.mean(errors <= 0.10))
    return {"n": len(usable), "kendall_tau": tau, "mdape": mdape, "within_10": within}


def prediction_accuracy(pairs: dict[str, list[tuple[float, float]]]) -> dict[str, dict]:
    """Per metric, `accuracy` of its pairs."""
    return {metric: accuracy(values) for metric, values in sorted(pairs.items())}
