"""Surrogate-assisted selection: breed many offspring, evaluate the ones worth it.

Every objective that costs something to measure — quality (perplexity, mad_error) and
hardware (prefill_ms, decode_ms, peak_mem_mb per device class) — gets a Gaussian process
(BoTorch `SingleTaskGP`) on the fixed-length genome encoding (`core.encoding`), fitted to
every observation there is: the job's own evaluations plus, through `prior`, every
evaluation with the same training config and every measurement of that device class in
other jobs on this exporter's graph revision (the fleet's latency model). Static objectives
(params, cache_bytes@L, flops@L) are exact and enter the acquisition as known values, not
predictions.

With `latency_prior`, a latency, prefill or peak-memory objective on one device class gets
the LIV latency model (orchestrator/search/latency_model.py, via latency_prior.py) as its
GP's prior mean, so the GP learns what the per-layer cost model misses (off by default: see
the attribute).

Each generation NSGA-II's variation breeds a pool of `pool_factor` times the offspring it
evaluates, plus the ends of a walk along the static objectives' front (static_front.py);
offspring that break a constraint on a static metric are dropped (never
evaluated), and the rest are ranked by log noisy expected hypervolume improvement
(`qLogNoisyExpectedHypervolumeImprovement`) over the current front, picked greedily (each
pick conditions the next), with constraints on predicted metrics as probabilistic
feasibility weights. Objectives are compared on log scales normalised by the observed range,
so no unit dominates the hypervolume. Below `min_points` observations of every modelled
objective the selector declines and the search takes the pool's first offspring: exactly
what plain NSGA-II would have bred.

Deterministic: a fixed seed per (job seed, generation), one torch thread, float64 and a
seeded quasi-Monte-Carlo sampler make the same data give the same picks in a fresh process,
so a resumed job breeds what it would have bred.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from core import Genome
from core.encoding import GenomeEncoding
from core.metrics import Constraint, parse_metric, static_metrics

from .fidelity import FIDELITY
from .latency_prior import latency_priors, prior_column_mean
from .static_screen import static_scale, statically_feasible

Observation = tuple[Genome, dict[str, Any]]  # a genome and the metrics measured for it


def modelled(name: str) -> bool:
    """Metrics that cost an evaluation to learn (everything but the exact static ones)."""
    return parse_metric(name).kind != "static"


@dataclass
class Selection:
    picked: list[int]  # indices into the pool, in pick order
    predictions: list[dict[str, dict[str, float]]]  # per pick: metric -> {"mean", "log_std"}
    info: dict[str, Any] = field(default_factory=dict)


def _log(values: np.ndarray) -> np.ndarray:
    return np.log(np.maximum(values, 1e-12))


@dataclass
class SurrogateSelector:
    objectives: list[str]
    constraints: list[Constraint] = field(default_factory=list)
    min_points: int = 10
    mc_samples: int = 32
    shortlist_factor: int = 3  # greedy picks run over the best k x this by single-pick value
    fit_iterations: int = 200
    seed: int = 0
    # hardware GPs' mean from the LIV latency model: off until the phone-scale benchmark
    # shows it helps (on synthetic per-layer latencies the encoding's GP alone matched it)
    latency_prior: bool = False
    fidelity_aware: bool = True  # the budget a quality was read at is a model input

    def __post_init__(self) -> None:
        lengths = sorted(
            {parse_metric(m).length for m in self.objectives if parse_metric(m).length} | {128}
        )
        self.encoding = GenomeEncoding(contexts=tuple(lengths[:3]))
        names = self.objectives + [c.metric for c in self.constraints]
        self.modelled = list(dict.fromkeys(m for m in names if modelled(m)))
        self.static = [m for m in self.objectives if not modelled(m)]
        self.prior_columns: dict[str, int] = {}  # metric -> its latency-prior input column
        self.fidelity_column = False  # whether the inputs end with the budget column

    # ----------------------------------------------------------------- data

    def training_sets(
        self, observations: list[Observation]
    ) -> dict[str, tuple[list[int], np.ndarray]]:
        """Per modelled metric: which observations have a finite positive value, and the
        logs of those values."""
        sets: dict[str, tuple[list[int], np.ndarray]] = {}
        for metric in self.modelled:
            rows, values = [], []
            for i, (_, metrics) in enumerate(observations):
                value = metrics.get(metric)
                if value is not None and math.isfinite(value) and value > 0:
                    rows.append(i)
                    values.append(value)
            sets[metric] = (rows, _log(np.asarray(values, dtype=float)))
        return sets

    def ready(self, observations: list[Observation]) -> bool:
        """Every modelled metric has `min_points` observations, and at least two genomes
        have all the modelled objectives (the front the improvement is measured against)."""
        return (
            all(
                len(rows) >= self.min_points
                for rows, _ in self.training_sets(observations).values()
            )
            and len(self.complete(observations)) >= 2
        )

    def complete(self, observations: list[Observation]) -> list[int]:
        """Observations with every modelled objective measured."""
        return [
            i
            for i, (_, metrics) in enumerate(observations)
            if all(
                metrics.get(m) is not None and math.isfinite(metrics[m]) and metrics[m] > 0
                for m in self.objectives
                if modelled(m)
            )
        ]

    # ----------------------------------------------------------------- selection

    def statically_feasible(self, pool: list[Genome]) -> list[int]:
        """Pool members that meet every constraint on an exact static metric."""
        return statically_feasible(pool, self.constraints)

    def select(
        self, pool: list[Genome], k: int, observations: list[Observation], generation: int
    ) -> Selection | None:
        """Pick `k` of `pool` to evaluate, or None when the models lack data (or no pool
        member is statically feasible)."""
        if not self.modelled or not self.ready(observations):
            return None
        allowed = self.statically_feasible(pool)
        info: dict[str, Any] = {"pool": len(pool), "statically_feasible": len(allowed)}
        if not allowed:
            return None
        import torch

        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.seed * 1009 + generation)
                chosen, predictions = self._acquire(pool, allowed, k, observations, info)
        finally:
            torch.set_num_threads(threads)
        return Selection(chosen, predictions, info)

    def _acquire(
        self,
        pool: list[Genome],
        allowed: list[int],
        k: int,
        observations: list[Observation],
        info: dict[str, Any],
    ):
        """BoTorch's tutorial steps in order, one method each, so each reads on its own."""
        sets = self.training_sets(observations)
        observed_genomes = [g for g, _ in observations]
        frames, static_logs = self._log_frames(sets, observed_genomes, pool)
        priors = (
            latency_priors(self.modelled, observations, observed_genomes + pool)
            if self.latency_prior
            else {}
        )
        X_all, n_features = self._inputs(observed_genomes + pool, frames, static_logs, priors)
        X_all = self._with_fidelity(X_all, observations, len(pool))
        model = self._fit_models(X_all, sets, frames)
        X_base = X_all[self.complete(observations)].clone()
        if self.fidelity_column:  # the front as it would be at the full budget
            X_base[:, -1] = 0.0
        acquisition = self._acquisition(
            model, self._objective(n_features), self._constraints(frames), X_base
        )
        X_pool = X_all[len(observed_genomes) :]
        shortlist = self._shortlist(acquisition, X_pool, allowed, k)
        chosen = _greedy_picks(acquisition, X_pool, shortlist, k)
        predictions = self._predictions(model, X_pool[chosen], frames)
        info.update(shortlist=len(shortlist), points={m: len(sets[m][0]) for m in self.modelled})
        if priors:
            info["latency_prior"] = sorted(priors)  # the metrics whose GP had the prior
        return chosen, predictions

    # ----------------------------------------------------------------- the acquisition steps

    def _log_frames(
        self,
        sets: dict[str, tuple[list[int], np.ndarray]],
        observed_genomes: list[Genome],
        pool: list[Genome],
    ) -> tuple[dict[str, tuple[float, float]], dict[str, np.ndarray]]:
        """Log ranges per objective, so each spans ~[0, 1] and no unit rules the hypervolume."""
        frames: dict[str, tuple[float, float]] = {}
        for metric, (_, logs) in sets.items():
            frames[metric] = (float(logs.min()), float(logs.max()))
        static_logs = {}
        static_values = [
            static_metrics(g.to_json(), self.static) for g in observed_genomes + pool
        ]  # each genome once
        for metric in self.static:  # zero-safe (static_screen.static_scale): no 1e-12 floor
            static_logs[metric] = static_scale(np.asarray([v[metric] for v in static_values]))
            frames[metric] = (float(static_logs[metric].min()), float(static_logs[metric].max()))
        return frames, static_logs

    def _inputs(
        self,
        genomes: list[Genome],
        frames: dict[str, tuple[float, float]],
        static_logs: dict[str, np.ndarray],
        priors: dict[str, np.ndarray],
    ):
        """The encoding, the scaled static objectives (exact values the objective reads),
        then the latency model's scaled log predictions (the hardware GPs' prior means)."""
        import torch

        columns = [_scale(frames, m, static_logs[m]) for m in self.static]
        features = self.encoding.encode_all(genomes)
        self.prior_columns = {}
        for metric, logs in priors.items():
            self.prior_columns[metric] = features.shape[1] + len(columns)
            columns.append(_scale(frames, metric, logs))
        extra = np.stack(columns, axis=1) if columns else np.zeros((len(genomes), 0))
        X_all = np.concatenate([features, extra], axis=1)
        return torch.tensor(X_all, dtype=torch.float64), features.shape[1]

    def _with_fidelity(self, X_all, observations: list[Observation], n_pool: int):
        """With multi-fidelity rungs, a last input column: log of the budget fraction each
        observation's quality was read at (0 = the full budget, which the pool is predicted
        at), so a perplexity read after a tenth of the tokens is not taken for the genome's."""
        import torch

        fractions = [float(m.get(FIDELITY, 1.0)) for _, m in observations] + [1.0] * n_pool
        self.fidelity_column = self.fidelity_aware and min(fractions) < 1.0
        if not self.fidelity_column:
            return X_all
        column = torch.tensor(np.log(fractions), dtype=torch.float64).unsqueeze(-1)
        return torch.cat([X_all, column], dim=-1)

    def _fit_models(
        self,
        X_all,
        sets: dict[str, tuple[list[int], np.ndarray]],
        frames: dict[str, tuple[float, float]],
    ):
        """One GP per modelled metric on its own observations, negated: more is better."""
        import torch
        from botorch.fit import fit_gpytorch_mll
        from botorch.models import ModelListGP, SingleTaskGP
        from botorch.models.transforms.input import Normalize
        from botorch.models.transforms.outcome import Standardize
        from gpytorch.mlls import ExactMarginalLogLikelihood

        bounds = torch.stack([X_all.min(0).values, X_all.max(0).values])
        bounds[1] = torch.maximum(bounds[1], bounds[0] + 1e-6)
        models = []
        for metric in self.modelled:
            rows, logs = sets[metric]
            X = X_all[rows]
            Y = -torch.tensor(_scale(frames, metric, logs), dtype=torch.float64).unsqueeze(-1)
            column = self.prior_columns.get(metric)
            gp = SingleTaskGP(
                X,
                Y,
                mean_module=None if column is None else prior_column_mean(column),
                input_transform=Normalize(d=X.shape[-1], bounds=bounds),
                outcome_transform=Standardize(m=1),
            )
            fit_gpytorch_mll(
                ExactMarginalLogLikelihood(gp.likelihood, gp),
                optimizer_kwargs={"options": {"maxiter": self.fit_iterations}},
            )
            models.append(gp)
        return ModelListGP(*models)

    def _objective(self, n_features: int):
        """Modelled samples, then the exact static columns: known costs are not predicted."""
        import torch

        objective_outputs = [self.modelled.index(m) for m in self.objectives if modelled(m)]
        n_static = len(self.static)

        def objective(Z, X=None):
            parts = [Z[..., objective_outputs]]
            if n_static:
                static = -X[..., n_features : n_features + n_static]
                parts.append(static.expand(*Z.shape[:-1], n_static))
            return torch.cat(parts, dim=-1)

        return objective

    def _constraints(self, frames: dict[str, tuple[float, float]]) -> list:
        """Modelled constraints as feasibility weights; static ones already pruned the pool."""
        constraints = []
        for c in self.constraints:
            if modelled(c.metric):
                j = self.modelled.index(c.metric)
                bound = float(_scale(frames, c.metric, _log(np.asarray([c.value])))[0])
                constraints.append(lambda Z, j=j, bound=bound: -Z[..., j] - bound)
        return constraints

    def _acquisition(self, model, objective, constraints: list, X_base):
        """Log noisy EHVI over the observed front: noise-aware, no vanishing values."""
        import torch
        from botorch.acquisition.multi_objective.logei import (
            qLogNoisyExpectedHypervolumeImprovement,
        )
        from botorch.acquisition.multi_objective.objective import GenericMCMultiOutputObjective
        from botorch.sampling.normal import SobolQMCNormalSampler
        from botorch.utils.multi_objective.hypervolume import infer_reference_point
        from botorch.utils.multi_objective.pareto import is_non_dominated

        with torch.no_grad():
            Y_base = objective(model.posterior(X_base).mean, X_base)
        ref = infer_reference_point(Y_base[is_non_dominated(Y_base)])
        return qLogNoisyExpectedHypervolumeImprovement(
            model=model,
            ref_point=ref,
            X_baseline=X_base,
            objective=GenericMCMultiOutputObjective(objective),
            sampler=SobolQMCNormalSampler(torch.Size([self.mc_samples]), seed=self.seed),
            constraints=constraints or None,
            eta=1e-2,
            prune_baseline=True,
            cache_root=True,
        )

    def _shortlist(self, acquisition, X_pool, allowed: list[int], k: int) -> list[int]:
        """Best single-pick values first: greedy picks cost more, so they see only these."""
        import torch

        with torch.no_grad():
            single = acquisition(X_pool[allowed].unsqueeze(-2))
        order = sorted(range(len(allowed)), key=lambda i: (-float(single[i]), i))
        return [allowed[i] for i in order[: max(k, k * self.shortlist_factor)]]

    def _predictions(
        self, model, X_chosen, frames: dict[str, tuple[float, float]]
    ) -> list[dict[str, dict[str, float]]]:
        """Mean and log std per pick, stored to be checked against the measurements."""
        import torch

        with torch.no_grad():
            posterior = model.posterior(X_chosen)
            means, stds = posterior.mean.numpy(), posterior.variance.sqrt().numpy()
        predictions = []
        for row in range(len(X_chosen)):
            entry = {}
            for j, metric in enumerate(self.modelled):
                low, high = frames[metric]
                span = max(high - low, 1e-9)
                log_mean = -means[row, j] * span + low  # undo the negation and the frame
                entry[metric] = {
                    "mean": float(math.exp(log_mean)),
                    "log_std": float(stds[row, j] * span),
                }
            predictions.append(entry)
        return predictions


def _scale(frames: dict[str, tuple[float, float]], metric: str, logs: np.ndarray) -> np.ndarray:
    """Logs of a metric mapped onto its frame (the frame's low end 0, its high end 1)."""
    low, high = frames[metric]
    return (logs - low) / max(high - low, 1e-9)


def _greedy_picks(acquisition, X_pool, shortlist: list[int], k: int) -> list[int]:
    """Each pick conditions the next (pending points), so picks spread over the front."""
    import torch

    remaining = list(shortlist)
    chosen: list[int] = []
    with torch.no_grad():
        for _ in range(min(k, len(remaining))):
            values = acquisition(X_pool[remaining].unsqueeze(-2))
            best = int(values.argmax())
            chosen.append(remaining.pop(best))
            acquisition.set_X_pending(X_pool[chosen])
    return chosen
