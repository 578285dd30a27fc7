"""The two fitted parts of the LIV latency model: a non-negative additive fit and a GP
residual on top of it.

`fit_additive` solves latency ~ sum_j w_j x_j with w >= 0 (scipy's NNLS) in relative error
(each row divided by its measurement: a 1 ms and a 50 ms genome weigh the same, as MAPE and
Kendall tau do). With ~40 cost columns and tens of measurements a free fit overfits, so each
column is pulled toward a pooled fit in which every column of the same kind shares one
coefficient (one cost per dense FLOP, per depthwise tap, per byte, per dispatched layer):
ridge toward that prior, its strength chosen by cross-validation (one-standard-error
rule). The same fit serves transfer: there the columns are a source device's per-class
contributions, all of kind "scale", so the prior is one device scale and the per-class
scales depart from it only as far as the data demand.

`LatencyResidual` is a GP (BoTorch `SingleTaskGP`, as the search's surrogate uses) on
log(measured / additive) over the genome encoding, fitted to out-of-fold additive
predictions so that it learns what the additive model misses on unseen genomes, not its
in-sample fit. Torch is imported only inside the functions that need it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LOO_ROWS = 24
LAMBDAS = (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0)  # ridge strengths tried (columns have mean 1)


@dataclass(frozen=True)
class AdditiveFit:
    coef: np.ndarray  # per column, >= 0
    ridge: float  # the chosen strength (inf: the pooled fit alone)
    oof: np.ndarray  # out-of-fold predictions of the training rows (what the residual sees)

    def predict(self, X: np.ndarray) -> np.ndarray:
        return X @ self.coef


def squared_log_errors(y: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """Per row, log(predicted / measured) squared: the relative error every choice between
    fits here is made on."""
    return np.log(np.maximum(predicted, 1e-12) / y) ** 2


def _nnls(A: np.ndarray, b: np.ndarray) -> np.ndarray:
    from scipy.optimize import nnls

    return nnls(A, b, maxiter=50 * A.shape[1])[0]


def _pooled(X: np.ndarray, y: np.ndarray, kinds: list[str]) -> np.ndarray:
    """One coefficient per kind, fitted in relative error, spread back onto the columns."""
    names = sorted(set(kinds))
    P = np.stack([X[:, [k == name for k in kinds]].sum(axis=1) for name in names], axis=1)
    w = _nnls(P / y[:, None], np.ones(len(y)))
    return np.array([w[names.index(k)] for k in kinds])


def _solve(X: np.ndarray, y: np.ndarray, kinds: list[str], ridge: float) -> np.ndarray:
    """min ||(Xw - y)/y||^2 + ridge ||s (w - w0)||^2 over w >= 0; s scales each column to
    mean 1 in relative units so one ridge strength fits every column."""
    prior = _pooled(X, y, kinds)
    if not np.isfinite(ridge):
        return prior
    A = X / y[:, None]
    scale = np.abs(A).mean(axis=0)
    used = scale > 0
    coef = np.zeros(X.shape[1])
    As, s = A[:, used] / scale[used], scale[used]
    u0 = prior[used] * s
    root = np.sqrt(ridge)
    A_aug = np.vstack([As, root * np.eye(used.sum())])
    b_aug = np.concatenate([np.ones(len(y)), root * u0])
    coef[used] = _nnls(A_aug, b_aug) / s
    return coef


def _folds(n: int, k: int, seed: int) -> list[np.ndarray]:
    order = np.random.default_rng(seed).permutation(n)
    return [order[i::k] for i in range(k)]


def _cross_validated(
    X: np.ndarray, y: np.ndarray, kinds: list[str], ridge: float, seed: int
) -> np.ndarray:
    """Out-of-fold predictions of every row: leave-one-out up to LOO_ROWS rows (5 folds of
    a dozen rows leave too few to fit, and NNLS is cheap), 5 folds above."""
    n = len(y)
    oof = np.zeros(n)
    for held in _folds(n, n if n <= LOO_ROWS else 5, seed):
        keep = np.setdiff1d(np.arange(n), held)
        oof[held] = X[held] @ _solve(X[keep], y[keep], kinds, ridge)
    return oof


def fit_additive(X: np.ndarray, y: np.ndarray, kinds: list[str], seed: int = 0) -> AdditiveFit:
    """The non-negative additive fit, its ridge chosen by cross-validated relative error
    with the one-standard-error rule: the strongest pull toward the pooled fit whose error
    is within one standard error of the best (with a dozen rows the minimum itself is mostly
    noise, and the free per-class fit it picks ranks held-out genomes worse). Fewer than 4
    rows: the pooled fit alone, nothing to validate on."""
    y = np.asarray(y, dtype=float)
    if len(y) < 4:
        coef = _solve(X, y, kinds, np.inf)
        return AdditiveFit(coef, np.inf, X @ coef)
    trials = []
    for ridge in (*LAMBDAS, np.inf):
        oof = _cross_validated(X, y, kinds, ridge, seed)
        errors = squared_log_errors(y, oof)
        trials.append((ridge, oof, errors.mean(), errors.std(ddof=1) / np.sqrt(len(y))))
    best = min(trials, key=lambda t: t[2])
    ridge, oof, _, _ = max((t for t in trials if t[2] <= best[2] + best[3]), key=lambda t: t[0])
    return AdditiveFit(_solve(X, y, kinds, ridge), ridge, oof)


@dataclass
class LatencyResidual:
    """A GP on log(measured / base prediction); `predict` gives its mean and std (logs)."""

    model: object  # a fitted SingleTaskGP
    bounds: object  # the encoding's range at fit time (torch tensor)

    @classmethod
    def fit(
        cls, encoded: np.ndarray, log_ratio: np.ndarray, iterations: int = 100
    ) -> "LatencyResidual":
        import torch
        from botorch.fit import fit_gpytorch_mll
        from botorch.models import SingleTaskGP
        from botorch.models.transforms.input import Normalize
        from botorch.models.transforms.outcome import Standardize
        from gpytorch.mlls import ExactMarginalLogLikelihood

        X = torch.tensor(encoded, dtype=torch.float64)
        Y = torch.tensor(log_ratio, dtype=torch.float64).unsqueeze(-1)
        bounds = torch.stack([X.min(0).values, X.max(0).values])
        bounds[1] = torch.maximum(bounds[1], bounds[0] + 1e-6)
        with _one_thread():
            gp = SingleTaskGP(
                X,
                Y,
                input_transform=Normalize(d=X.shape[-1], bounds=bounds),
                outcome_transform=Standardize(m=1),
            )
            fit_gpytorch_mll(
                ExactMarginalLogLikelihood(gp.likelihood, gp),
                optimizer_kwargs={"options": {"maxiter": iterations}},
            )
        return cls(gp, bounds)

    def predict(self, encoded: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(mean, std) of the log ratio of a new measurement (observation noise included)."""
        import torch

        X = torch.tensor(encoded, dtype=torch.float64)
        with torch.no_grad(), _one_thread():
            posterior = self.model.posterior(X, observation_noise=True)
            mean = posterior.mean.squeeze(-1).numpy()
            std = posterior.variance.clamp_min(0).sqrt().squeeze(-1).numpy()
        return mean, std


def residual_helps(encoded: np.ndarray, log_ratio: np.ndarray, seed: int = 0) -> bool:
    """Whether the GP residual predicts held-out log ratios better than none (zero), on 5
    folds. The residual sees a high-dimensional encoding of a few dozen genomes: where the
    additive part's errors are measurement noise, it fits the noise and its held-out error
    exceeds the additive part's own (phone scale, decode: MdAPE 15 % without, 27.5 % with,
    bench/README Latency model)."""
    n = len(log_ratio)
    held_out = np.zeros(n)
    for held in _folds(n, 5, seed):
        keep = np.setdiff1d(np.arange(n), held)
        residual = LatencyResidual.fit(encoded[keep], log_ratio[keep])
        held_out[held] = residual.predict(encoded[held])[0]
    return float(np.mean((log_ratio - held_out) ** 2)) < float(np.mean(log_ratio**2))


class _one_thread:
    """Torch on one thread while fitting: the machine's other cores measure latencies."""

    def __enter__(self):
        import torch

        self.threads = torch.get_num_threads()
        torch.set_num_threads(1)

    def __exit__(self, *exc):
        import torch

        torch.set_num_threads(self.threads)
