"""The LIV latency model as the surrogate's prior for hardware metrics.

For every modelled `prefill_ms@L[D]`, `decode_ms@L[D]` or `peak_mem_mb[D]` objective the
surrogate's Gaussian process gets a mean function that is a fitted linear function of the
latency model's log prediction (orchestrator/search/latency_model.py: per-layer costs summed
nn-Meter style, its own residual, transfer from other device classes), so the GP learns only
what the cost model misses and extrapolates with it instead of towards a constant. The log
predictions enter the inputs as extra columns (`latency_priors`), and the GP of that metric
reads its column through `PriorColumnMean`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from core import Genome

from .latency_features import LatencyTarget
from .latency_model import LatencyModel


def _target(metric: str) -> LatencyTarget | None:
    try:
        return LatencyTarget.parse(metric)
    except ValueError:
        return None  # not one device class's latency or memory (a fleet, perplexity...)


def latency_priors(
    metrics: list[str], observations: list[tuple[Genome, dict[str, Any]]], genomes: list[Genome]
) -> dict[str, np.ndarray]:
    """Per metric the latency model can fit (two measurements or more): the log of its
    prediction for each of `genomes`."""
    targets = {m: t for m in metrics if (t := _target(m)) is not None}
    if not targets:
        return {}
    by_class: dict[str, list[tuple[Genome, dict[str, float]]]] = {}
    for genome, measured in observations:
        for metric, target in targets.items():
            value = measured.get(metric)
            if value is not None and math.isfinite(value) and value > 0:
                by_class.setdefault(target.device, []).append((genome, {metric: value}))
    if not by_class:
        return {}
    model = LatencyModel(seed=0).fit(by_class)
    return {
        metric: np.log(np.maximum(model.predict(genomes, metric).mean, 1e-12))
        for metric, target in targets.items()
        if target in model.fitted
    }


def prior_column_mean(column: int):
    """A GP mean `weight * x[column] + bias` (both fitted with the kernel's hyperparameters)."""
    import torch
    from gpytorch.means import Mean

    class PriorColumnMean(Mean):
        def __init__(self):
            super().__init__()
            self.register_parameter("weight", torch.nn.Parameter(torch.zeros(1)))
            self.register_parameter("bias", torch.nn.Parameter(torch.zeros(1)))

        def forward(self, x):
            return self.weight * x[..., column] + self.bias

    return PriorColumnMean()
