"""A latency and peak-memory model built for LIV networks, with transfer to new device classes.

What it predicts: `prefill_ms@L`, `decode_ms@L` and `peak_mem_mb` of a genome on one device
class at one precision (a `LatencyTarget`, spelled as the metric grammar spells it,
`decode_ms@128[SM-S928B:int8]`), as a mean and a log standard deviation, the shape the
search's surrogate stores with every candidate.

How (issue #23):
- from scratch, nn-Meter style: the sum over executed layers of per-class cost terms
  (`latency_features`: FLOPs, context-dependent mixing FLOPs, bytes moved and dispatches per
  operator class, plus head and runtime terms; byte terms for peak memory), with one
  non-negative coefficient per (class, term) fitted per target (`latency_fit.fit_additive`),
  times exp(a GP residual on the genome encoding) once a target has `min_residual`
  measurements and the residual predicts held-out genomes better than none;
- by transfer, HELP / MAPLE-Edge style: a target with few measurements reuses the per-class
  structure of the best-measured platform (same metric and length, another device class or
  precision): its prediction split into per-class contributions, each scaled, the scales
  pulled toward one device scale and departing from it only as far as the data demand, plus
  the target's own residual. With no measurement at all the source model is scaled by the
  median scale the other platforms showed against it. With enough measurements transfer and
  from-scratch compete on cross-validated error: from-scratch is kept only when its error is
  lower by more than one standard error (`_clearly_better`).

Accuracy (`accuracy`, `held_out_accuracy`) is Kendall tau, median absolute percentage error
and the share within +-10 % (core.prediction_accuracy), refused on genomes the model was
fitted to: predictor accuracy is defined "on candidates the model had not seen".
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from core import Genome
from core.encoding import GenomeEncoding
from core.prediction_accuracy import accuracy

from .latency_features import PEAK_NAME, LatencyTarget, columns, features
from .latency_fit import (
    AdditiveFit,
    LatencyResidual,
    fit_additive,
    residual_helps,
    squared_log_errors,
)

Observation = tuple[Genome, dict[str, Any]]  # a genome and the metrics measured for it
ZERO_SHOT_LOG_STD = math.log(2.0)  # a guess about an unmeasured device: within 2x


@dataclass(frozen=True)
class LatencyPrediction:
    mean: np.ndarray  # predicted values, in the metric's unit
    log_std: np.ndarray  # std of log(measured), per genome
    how: str  # which model gave it (scratch / transfer from ... / zero-shot from ...)

    def as_dicts(self) -> list[dict[str, float]]:
        """Per genome {"mean", "log_std"}: what `surrogate.Selection.predictions` stores."""
        return [{"mean": float(m), "log_std": float(s)} for m, s in zip(self.mean, self.log_std)]


@dataclass
class _Fitted:
    """One target's fitted model: the additive part over `X(genomes)` and its residual."""

    target: LatencyTarget
    hashes: set[str]
    additive: AdditiveFit
    residual: LatencyResidual | None
    noise: float  # log std of the out-of-fold errors: the spread when there is no residual
    source: "_Fitted | None" = None  # transfer: the columns are this model's contributions
    how: str = "scratch"


def _log_oof_std(y: np.ndarray, oof: np.ndarray) -> float:
    return float(np.sqrt(np.mean(squared_log_errors(y, oof)))) if len(y) > 1 else ZERO_SHOT_LOG_STD


@dataclass(frozen=True)
class FitChoice:
    """Transfer against from scratch for one target, as `fit` decided it: the fit kept, the
    one set aside, and from scratch's mean out-of-fold squared log error less transfer's
    with the standard error of that paired difference (nan with fewer than 2 points)."""

    kept: str  # "transfer" or "scratch"
    set_aside: _Fitted
    difference: float
    standard_error: float


def _paired_difference(model: _Fitted, other: _Fitted, y: np.ndarray) -> tuple[float, float]:
    """Mean and standard error of `model`'s out-of-fold squared log errors less `other`'s."""
    if len(y) < 2:
        return math.nan, math.nan
    diff = squared_log_errors(y, model.additive.oof) - squared_log_errors(y, other.additive.oof)
    return float(diff.mean()), float(diff.std(ddof=1) / np.sqrt(len(y)))


def _clearly_better(model: _Fitted, other: _Fitted, y: np.ndarray) -> bool:
    """Whether `model`'s out-of-fold errors are below `other`'s by more than one standard
    error of their paired difference: the one-standard-error rule `fit_additive` applies to
    its ridge, here between from-scratch and transfer. A few held-out points cannot tell two
    close fits apart, and then transfer, whose structure was fitted on many genomes, stays
    (latency model's fifth run: at 10 measurements of the new class the two fits' errors
    differed by 0.0002 against a standard error of 0.017, and the one kept by the smaller
    error ranked held-out genomes worse, tau 0.855 against 0.895; bench/README)."""
    mean, standard_error = _paired_difference(model, other, y)
    return mean + standard_error < 0  # nan (fewer than 2 points): False


@dataclass
class LatencyModel:
    """Per target an additive-plus-residual model, or a transfer from a measured platform."""

    peak_lengths: tuple[int, int] = (512, 512)  # (longest prefill, longest decode) profiled
    min_residual: int = 12  # measurements before a target gets its own GP residual
    min_source: int = 8  # measurements before a platform may serve as a transfer source
    seed: int = 0
    fitted: dict[LatencyTarget, _Fitted] = field(default_factory=dict)
    data: dict[LatencyTarget, tuple[list[Genome], np.ndarray]] = field(default_factory=dict)
    choices: dict[LatencyTarget, FitChoice] = field(default_factory=dict)

    # ----------------------------------------------------------------- fitting

    def fit(self, observations_by_device_class: dict[str, list[Observation]]) -> "LatencyModel":
        """Fit every target measured: from scratch first, then transfer, kept unless from
        scratch is clearly better (`_clearly_better`).

        Each device class's observations carry metric names as `measured_metrics` spells
        them; their device is that class (the key), their precision their own."""
        self.data = _group(observations_by_device_class)
        self.fitted, self.choices = {}, {}
        for target, (genomes, y) in self.data.items():
            if len(y) >= 2:
                self.fitted[target] = self._fit_scratch(target, genomes, y)
        for target, (genomes, y) in self.data.items():
            source = self._source(target)
            if source is None or len(y) == 0:
                continue
            transfer = self._fit_transfer(target, genomes, y, source)
            scratch = self.fitted.get(target)
            # below 4 measurements nothing is held out: transfer, the fewer free scales
            if scratch is None or len(y) < 4 or not _clearly_better(scratch, transfer, y):
                self.fitted[target] = transfer
            if scratch is not None:
                kept_transfer = self.fitted[target] is transfer
                self.choices[target] = FitChoice(
                    "transfer" if kept_transfer else "scratch",
                    scratch if kept_transfer else transfer,
                    *_paired_difference(scratch, transfer, y),
                )
        return self

    def _encoding(self, target: LatencyTarget) -> GenomeEncoding:
        return GenomeEncoding(contexts=(target.length or self.peak_lengths[0],))

    def _X(self, genomes: list[Genome], target: LatencyTarget) -> np.ndarray:
        return features(genomes, target, self.peak_lengths)

    def _with_residual(
        self, fitted: _Fitted, genomes: list[Genome], y: np.ndarray, base_oof: np.ndarray
    ) -> _Fitted:
        """Add the GP residual on the out-of-fold ratios once there are enough of them and
        it predicts held-out ratios better than none (`residual_helps`)."""
        if len(y) >= self.min_residual:
            encoded = self._encoding(fitted.target).encode_all(genomes)
            ratio = np.log(y / np.maximum(base_oof, 1e-12))
            if residual_helps(encoded, ratio, self.seed):
                fitted.residual = LatencyResidual.fit(encoded, ratio)
                fitted.how += "+residual"
            else:
                fitted.how += " (residual did not help held-out genomes)"
        return fitted

    def _fit_scratch(self, target: LatencyTarget, genomes: list[Genome], y: np.ndarray) -> _Fitted:
        kinds = [c.kind for c in columns(target)]
        additive = fit_additive(self._X(genomes, target), y, kinds, self.seed)
        fitted = _Fitted(
            target, {g.hash() for g in genomes}, additive, None, _log_oof_std(y, additive.oof)
        )
        return self._with_residual(fitted, genomes, y, additive.oof)

    def _source(self, target: LatencyTarget) -> _Fitted | None:
        """The platform measured most for the same metric and length (at least
        `min_source` times, and more than the target itself)."""
        own = len(self.data.get(target, ([], []))[1])
        candidates = [
            f
            for t, f in self.fitted.items()
            if t.quantity == target.quantity
            and t != target
            and f.source is None
            and len(f.hashes) >= max(self.min_source, own + 1)
        ]
        return max(candidates, key=lambda f: (len(f.hashes), str(f.target)), default=None)

    def _fit_transfer(
        self, target: LatencyTarget, genomes: list[Genome], y: np.ndarray, source: _Fitted
    ) -> _Fitted:
        C = self._contributions(source, genomes)
        additive = fit_additive(C, y, ["scale"] * C.shape[1], self.seed)
        fitted = _Fitted(
            target,
            {g.hash() for g in genomes},
            additive,
            None,
            _log_oof_std(y, additive.oof),
            source=source,
            how=f"transfer from {source.target} ({len(y)} measured)",
        )
        return self._with_residual(fitted, genomes, y, additive.oof)

    def _zero_shot(self, target: LatencyTarget) -> _Fitted:
        """Source model x the median scale of the other measured platforms against it."""
        source = self._source(target)
        if source is None:
            raise ValueError(
                f"no model for {target}: it has fewer than 2 measurements and no platform "
                f"measured {self.min_source}+ times for {target.name}"
                f"{'@' + str(target.length) if target.length else ''} to transfer from"
            )
        scales = []
        for other, (genomes, y) in self.data.items():
            if other.quantity == target.quantity and other != source.target and len(y):
                scales.append(float(np.median(y / self._predict(source, genomes)[0])))
        scale = float(np.median(scales)) if scales else 1.0
        groups = self._contributions(source, []).shape[1]
        additive = AdditiveFit(np.full(groups, scale), np.inf, np.zeros(0))
        how = f"zero-shot from {source.target} x {scale:.3g}"
        return _Fitted(target, set(), additive, None, ZERO_SHOT_LOG_STD, source, how)

    # ----------------------------------------------------------------- prediction

    def _contributions(self, fitted: _Fitted, genomes: list[Genome]) -> np.ndarray:
        """Per genome, the fitted model's prediction split into its column groups (operator
        classes, head, runtime), each times the residual's correction: what transfer scales."""
        cols = columns(fitted.target)
        groups = sorted({c.group for c in cols})
        if not genomes:
            return np.zeros((0, len(groups)))
        X = self._X(genomes, fitted.target) * fitted.additive.coef
        parts = np.stack([X[:, [c.group == g for c in cols]].sum(axis=1) for g in groups], axis=1)
        if fitted.residual is not None:
            parts *= np.exp(
                fitted.residual.predict(self._encoding(fitted.target).encode_all(genomes))[0]
            )[:, None]
        return parts

    def _predict(self, fitted: _Fitted, genomes: list[Genome]) -> tuple[np.ndarray, np.ndarray]:
        if fitted.source is None:
            base = self._X(genomes, fitted.target) @ fitted.additive.coef
        else:
            base = self._contributions(fitted.source, genomes) @ fitted.additive.coef
        log_std = np.full(len(genomes), fitted.noise)
        if fitted.residual is not None:
            mean, log_std = fitted.residual.predict(
                self._encoding(fitted.target).encode_all(genomes)
            )
            base = base * np.exp(mean)
        return np.maximum(base, 1e-9), log_std

    def model_for(self, metric: str, device_class: str | None = None) -> _Fitted:
        target = LatencyTarget.parse(metric, device_class)
        return self.fitted.get(target) or self._zero_shot(target)

    def predict(
        self, genomes: list[Genome], metric: str, device_class: str | None = None
    ) -> LatencyPrediction:
        """Mean and log std of `metric` for each genome; `device_class`, when given, names
        the class (the metric then needs none: `decode_ms@128`, `decode_ms@128[:int8]`)."""
        fitted = self.model_for(metric, device_class)
        mean, log_std = self._predict(fitted, list(genomes))
        return LatencyPrediction(mean, log_std, fitted.how)

    def set_aside(
        self, genomes: list[Genome], metric: str, device_class: str | None = None
    ) -> LatencyPrediction | None:
        """What the fit `fit` compared with the kept one and set aside (transfer or from
        scratch) predicts for `genomes`; None where there was no such choice. For reports:
        how the choice turned out on genomes neither fit saw."""
        choice = self.choices.get(LatencyTarget.parse(metric, device_class))
        if choice is None:
            return None
        mean, log_std = self._predict(choice.set_aside, list(genomes))
        return LatencyPrediction(mean, log_std, choice.set_aside.how)

    def describe(self) -> dict[str, dict[str, Any]]:
        """Per fitted target: how it was fitted, from how many measurements, its spread."""
        return {
            str(t): {
                "how": f.how,
                "n": len(f.hashes),
                "log_std": f.noise,
                "ridge": f.additive.ridge,
            }
            for t, f in sorted(self.fitted.items(), key=lambda item: str(item[0]))
        }

    def held_out_accuracy(
        self,
        genomes: list[Genome],
        measured: list[float],
        metric: str,
        device_class: str | None = None,
    ) -> dict[str, float | int | None]:
        """`accuracy` of the predictions on genomes this target's model never saw."""
        fitted = self.model_for(metric, device_class)
        seen = [g.hash() for g in genomes if g.hash() in fitted.hashes]
        if seen:
            raise ValueError(
                f"{len(seen)} genome(s) were used to fit {fitted.target}; accuracy is only "
                "measured on genomes the model has not seen"
            )
        predicted = self._predict(fitted, list(genomes))[0]
        return accuracy(list(zip(predicted.tolist(), measured)))


def _group(
    observations_by_device_class: dict[str, list[Observation]],
) -> dict[LatencyTarget, tuple[list[Genome], np.ndarray]]:
    """Per target, the genomes and positive finite values measured for it."""
    rows: dict[LatencyTarget, tuple[list[Genome], list[float]]] = {}
    for device_class, observations in observations_by_device_class.items():
        for genome, metrics in observations:
            for name, value in metrics.items():
                try:
                    target = LatencyTarget.parse(name, device_class)
                except ValueError:
                    continue  # not a latency or memory metric of one device: not ours
                if value is None or not math.isfinite(value) or value <= 0:
                    continue
                genomes, values = rows.setdefault(target, ([], []))
                genomes.append(Genome.coerce(genome))
                values.append(float(value))
    return {t: (g, np.asarray(v, dtype=float)) for t, (g, v) in rows.items()}


__all__ = [
    "PEAK_NAME",
    "FitChoice",
    "LatencyModel",
    "Observation",
    "LatencyPrediction",
    "LatencyTarget",
    "accuracy",
]
